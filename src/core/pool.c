/* The buffer pool: device memory kept in power-of-two buckets. A step of a
 * decode loop takes its scratch buffers from the pool and qn_pool_reset gives
 * them all back, so after the first step no device allocation happens. */
#include "core/internal.h"

#include <stdlib.h>

#define MIN_BUCKET_LOG2 8 /* 256 bytes */
#define NBUCKETS 56

struct qn_pool {
    qn_device *dev;
    pthread_mutex_t mu;
    qn_buffer *free_list[NBUCKETS]; /* by log2 of the bucket size */
    qn_buffer *in_use;
    qn_pool_stats stats;
};

qn_status qn_pool_create(qn_device *dev, qn_pool **out) {
    if (!dev || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_pool_create: NULL argument");
    qn_pool *p = calloc(1, sizeof *p);
    if (!p) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_pool_create: out of host memory");
    p->dev = dev;
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return QN_OK;
}

static int bucket_of(size_t bytes) {
    int k = MIN_BUCKET_LOG2;
    while (k < NBUCKETS - 1 && ((size_t)1 << k) < bytes) k++;
    return k;
}

qn_status qn_pool_alloc(qn_pool *p, qn_dtype dtype, int ndim, const int64_t *ne, qn_buffer **out) {
    if (!p || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_pool_alloc: NULL argument");
    *out = NULL;
    size_t bytes;
    QN_TRY(qn_buffer_shape_bytes("qn_pool_alloc", dtype, ndim, ne, &bytes));
    int k = bucket_of(bytes);
    if (((size_t)1 << k) < bytes)
        return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_pool_alloc: %zu bytes is beyond the largest bucket", bytes);
    pthread_mutex_lock(&p->mu);
    qn_buffer *b = p->free_list[k];
    qn_status s = QN_OK;
    if (b) {
        p->free_list[k] = b->pool_next;
        p->stats.hits++;
    } else {
        uint64_t addr;
        s = qn_device_alloc_raw(p->dev, (size_t)1 << k, &addr);
        if (s == QN_OK) {
            s = qn_buffer_wrap(p->dev, addr, bytes, dtype, ndim, ne, &b);
            if (s != QN_OK) qn_device_free_raw(p->dev, addr);
        }
        if (s == QN_OK) {
            b->pool = p;
            b->pool_bucket = (size_t)1 << k;
            p->stats.allocations++;
            p->stats.bytes_reserved += b->pool_bucket;
        }
    }
    if (s == QN_OK) {
        b->bytes = bytes;
        b->dtype = dtype;
        b->ndim = ndim;
        for (int i = 0; i < 4; i++) b->ne[i] = i < ndim ? ne[i] : 1;
        b->pool_next = p->in_use;
        p->in_use = b;
        p->stats.bytes_in_use += b->pool_bucket;
        *out = b;
    }
    pthread_mutex_unlock(&p->mu);
    return s;
}

static void to_bucket(qn_pool *p, qn_buffer *b) {
    int k = bucket_of(b->pool_bucket);
    b->pool_next = p->free_list[k];
    p->free_list[k] = b;
    p->stats.bytes_in_use -= b->pool_bucket;
}

void qn_pool_give_back(qn_buffer *buf) {
    qn_pool *p = buf->pool;
    pthread_mutex_lock(&p->mu);
    for (qn_buffer **link = &p->in_use; *link; link = &(*link)->pool_next) {
        if (*link == buf) {
            *link = buf->pool_next;
            to_bucket(p, buf);
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

void qn_pool_reset(qn_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    while (p->in_use) {
        qn_buffer *b = p->in_use;
        p->in_use = b->pool_next;
        to_bucket(p, b);
    }
    pthread_mutex_unlock(&p->mu);
}

void qn_pool_stats_get(const qn_pool *p, qn_pool_stats *out) {
    if (p && out) *out = p->stats;
}

void qn_pool_destroy(qn_pool *p) {
    if (!p) return;
    qn_pool_reset(p);
    for (int k = 0; k < NBUCKETS; k++) {
        while (p->free_list[k]) {
            qn_buffer *b = p->free_list[k];
            p->free_list[k] = b->pool_next;
            qn_device_free_raw(p->dev, b->addr);
            free(b);
        }
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}
