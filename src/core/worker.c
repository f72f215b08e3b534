/* The encoding worker: a thread with its own encoder (its own stream on the
 * GPU). Jobs encode onto it while the caller encodes on its own encoder;
 * the two are ordered on the device by events (qn_cuda_encoder_after), so no
 * thread waits for the GPU. On the CPU the worker's commit runs its ops on
 * the worker thread, and ordering is by committing the `after` encoder first. */
#include "core/internal.h"
#include "cuda/cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    qn_job_fn fn;
    void *arg;
} job;

struct qn_worker {
    qn_device *dev;
    qn_encoder *enc;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake, idle;
    job *jobs; /* FIFO: jobs[head..tail) */
    size_t head, tail, cap;
    bool busy, quit;
    qn_status error; /* first failure since the last join */
    char error_msg[1024];
};

static void *worker_main(void *p) {
    qn_worker *w = p;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->quit && w->head == w->tail) pthread_cond_wait(&w->wake, &w->mu);
        if (w->head == w->tail) break; /* quit, with the queue drained */
        job j = w->jobs[w->head++];
        w->busy = true;
        pthread_mutex_unlock(&w->mu);
        qn_status s = j.fn(w->enc, j.arg);
        if (s == QN_OK) s = qn_encoder_commit(w->enc);
        pthread_mutex_lock(&w->mu);
        if (s != QN_OK && w->error == QN_OK) {
            w->error = s;
            snprintf(w->error_msg, sizeof w->error_msg, "%s", qn_last_error());
        }
        w->busy = false;
        if (w->head == w->tail) pthread_cond_broadcast(&w->idle);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

qn_status qn_worker_create(qn_device *dev, qn_worker **out) {
    if (!dev || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_worker_create: NULL argument");
    *out = NULL;
    qn_worker *w = calloc(1, sizeof *w);
    if (!w) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_worker_create: out of host memory");
    w->dev = dev;
    qn_status s = qn_encoder_create(dev, &w->enc);
    if (s != QN_OK) {
        free(w);
        return s;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->idle, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        qn_encoder_destroy(w->enc);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->idle);
        free(w);
        return qn_error(QN_ERR_DEVICE, "qn_worker_create: could not start the worker thread");
    }
    *out = w;
    return QN_OK;
}

void qn_worker_destroy(qn_worker *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    qn_encoder_destroy(w->enc);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->idle);
    free(w->jobs);
    free(w);
}

qn_status qn_worker_submit(qn_worker *w, qn_encoder *after, qn_job_fn fn, void *arg) {
    if (!w || !fn) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_worker_submit: NULL argument");
    if (after && after->dev != w->dev)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_worker_submit: `after` belongs to another device");
    if (after) {
        if (w->dev->backend == QN_BACKEND_CUDA) QN_TRY(qn_cuda_encoder_after(w->enc, after));
        else QN_TRY(qn_encoder_commit(after));
    }
    pthread_mutex_lock(&w->mu);
    if (w->head > 0 && w->head == w->tail) w->head = w->tail = 0;
    if (w->tail == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        job *j = realloc(w->jobs, cap * sizeof *j);
        if (!j) {
            pthread_mutex_unlock(&w->mu);
            return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_worker_submit: out of host memory");
        }
        w->jobs = j;
        w->cap = cap;
    }
    w->jobs[w->tail++] = (job){fn, arg};
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    return QN_OK;
}

qn_status qn_worker_join(qn_worker *w, qn_encoder *into) {
    if (!w) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_worker_join: worker is NULL");
    if (into && into->dev != w->dev)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_worker_join: `into` belongs to another device");
    pthread_mutex_lock(&w->mu);
    while (w->busy || w->head != w->tail) pthread_cond_wait(&w->idle, &w->mu);
    qn_status s = w->error;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", w->error_msg);
    w->error = QN_OK;
    pthread_mutex_unlock(&w->mu);
    if (s != QN_OK) return qn_error(s, "%s", msg);
    if (into && w->dev->backend == QN_BACKEND_CUDA) return qn_cuda_encoder_after(into, w->enc);
    return QN_OK;
}
