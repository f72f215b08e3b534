/* The CPU backend: a thread pool, and encoders that record ops as commands
 * (a function and a copy of its arguments) and run them in order at commit.
 * Recording, rather than running at once, is what lets the CPU capture a
 * graph and replay it exactly as the GPU does. */
#include "core/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct qn_cpu_device {
    int nthreads; /* including the calling thread */
    pthread_t *threads;
    pthread_mutex_t turn; /* one parallel_for at a time */
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    uint64_t generation; /* bumped for each job */
    int running;         /* workers still in the current job */
    bool quit;
    /* the current job */
    int64_t n;
    void (*fn)(void *ctx, int64_t begin, int64_t end);
    void *ctx;
};

static void run_share(qn_cpu_device *c, int t) {
    int64_t begin = c->n * t / c->nthreads, end = c->n * (t + 1) / c->nthreads;
    if (begin < end) c->fn(c->ctx, begin, end);
}

typedef struct {
    qn_cpu_device *c;
    int t;
} thread_arg;

static void *worker_main(void *p) {
    thread_arg a = *(thread_arg *)p;
    free(p);
    qn_cpu_device *c = a.c;
    uint64_t seen = 0;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->quit && c->generation == seen) pthread_cond_wait(&c->start, &c->mu);
        if (c->quit) break;
        seen = c->generation;
        pthread_mutex_unlock(&c->mu);
        run_share(c, a.t);
        pthread_mutex_lock(&c->mu);
        if (--c->running == 0) pthread_cond_signal(&c->done);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

void qn_cpu_parallel_for(qn_device *dev, int64_t n, void (*fn)(void *ctx, int64_t begin, int64_t end),
                         void *ctx) {
    qn_cpu_device *c = dev->cpu;
    if (n <= 0) return;
    if (c->nthreads == 1 || n == 1) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&c->turn);
    pthread_mutex_lock(&c->mu);
    c->n = n;
    c->fn = fn;
    c->ctx = ctx;
    c->running = c->nthreads - 1;
    c->generation++;
    pthread_cond_broadcast(&c->start);
    pthread_mutex_unlock(&c->mu);
    run_share(c, 0);
    pthread_mutex_lock(&c->mu);
    while (c->running > 0) pthread_cond_wait(&c->done, &c->mu);
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&c->turn);
}

static int thread_count(void) {
    const char *env = getenv("QUANTA_THREADS");
    int n = env ? atoi(env) : 0;
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    return n > 256 ? 256 : n;
}

qn_status qn_cpu_device_open(qn_device *dev) {
    qn_cpu_device *c = calloc(1, sizeof *c);
    if (!c) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_device_open: out of host memory");
    c->nthreads = thread_count();
    c->threads = calloc((size_t)c->nthreads, sizeof *c->threads);
    if (!c->threads) {
        free(c);
        return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_device_open: out of host memory");
    }
    pthread_mutex_init(&c->turn, NULL);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->start, NULL);
    pthread_cond_init(&c->done, NULL);
    dev->cpu = c;
    for (int t = 1; t < c->nthreads; t++) {
        thread_arg *a = malloc(sizeof *a);
        if (a) *a = (thread_arg){c, t};
        if (!a || pthread_create(&c->threads[t], NULL, worker_main, a) != 0) {
            free(a);
            c->nthreads = t; /* the threads made so far are joined by close */
            qn_cpu_device_close(dev);
            return qn_error(QN_ERR_DEVICE, "qn_device_open: could not start CPU thread %d", t);
        }
    }
    dev->info.sm_count = c->nthreads;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    dev->info.total_memory = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    snprintf(dev->info.name, sizeof dev->info.name, "CPU (%d threads)", c->nthreads);
    snprintf(dev->info.arch, sizeof dev->info.arch, "cpu");
    return QN_OK;
}

void qn_cpu_device_close(qn_device *dev) {
    qn_cpu_device *c = dev->cpu;
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->quit = true;
    pthread_cond_broadcast(&c->start);
    pthread_mutex_unlock(&c->mu);
    for (int t = 1; t < c->nthreads; t++) pthread_join(c->threads[t], NULL);
    pthread_mutex_destroy(&c->turn);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->start);
    pthread_cond_destroy(&c->done);
    free(c->threads);
    free(c);
    dev->cpu = NULL;
}

/* ---- command lists */

static qn_status push(qn_cpu_cmd_list *l, const char *op, qn_cpu_fn fn, const void *args, size_t size) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        qn_cpu_cmd *c = realloc(l->cmds, cap * sizeof *c);
        if (!c) return qn_error(QN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
        l->cmds = c;
        l->cap = cap;
    }
    size_t aligned = (l->args_len + 15) & ~(size_t)15; /* args hold doubles and pointers */
    if (aligned + size > l->args_cap) {
        size_t cap = l->args_cap ? l->args_cap : 4096;
        while (cap < aligned + size) cap *= 2;
        unsigned char *a = realloc(l->args, cap);
        if (!a) return qn_error(QN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
        l->args = a;
        l->args_cap = cap;
    }
    memcpy(l->args + aligned, args, size);
    l->cmds[l->n++] = (qn_cpu_cmd){op, fn, aligned, size};
    l->args_len = aligned + size;
    return QN_OK;
}

qn_status qn_cpu_cmd_list_append(qn_cpu_cmd_list *list, const qn_cpu_cmd_list *src) {
    for (size_t i = 0; i < src->n; i++) {
        const qn_cpu_cmd *c = &src->cmds[i];
        QN_TRY(push(list, c->op, c->fn, src->args + c->args_offset, c->args_size));
    }
    return QN_OK;
}

void qn_cpu_cmd_list_free(qn_cpu_cmd_list *l) {
    free(l->cmds);
    free(l->args);
    memset(l, 0, sizeof *l);
}

qn_status qn_cpu_enqueue(qn_encoder *enc, const char *op, qn_cpu_fn fn, const void *args, size_t size) {
    return push(&enc->pending, op, fn, args, size);
}
