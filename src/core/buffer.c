/* Buffers, views and tensor descriptors. */
#include "core/internal.h"
#include "cuda/cuda.h"

#include <stdlib.h>
#include <string.h>

qn_status qn_buffer_shape_bytes(const char *who, qn_dtype dtype, int ndim, const int64_t *ne, size_t *bytes) {
    if (!qn_dtype_name(dtype)) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: unknown dtype %d", who, (int)dtype);
    if (ndim < 1 || ndim > 4) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: ndim %d (must be 1 to 4)", who, ndim);
    if (!ne) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: shape is NULL", who);
    for (int i = 0; i < ndim; i++)
        if (ne[i] < 1 || ne[i] > ((int64_t)1 << 48))
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: ne[%d] = %lld out of range", who, i, (long long)ne[i]);
    int64_t row = qn_dtype_row_bytes(dtype, ne[0]);
    if (row < 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: ne[0] = %lld is not a multiple of %s's block of %lld", who,
                        (long long)ne[0], qn_dtype_name(dtype), (long long)qn_dtype_block_elems(dtype));
    uint64_t total = (uint64_t)row;
    for (int i = 1; i < ndim; i++) {
        if (total > ((uint64_t)1 << 62) / (uint64_t)ne[i])
            return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: shape overflows the address space", who);
        total *= (uint64_t)ne[i];
    }
    *bytes = (size_t)total;
    return QN_OK;
}

static qn_status make(qn_device *dev, qn_dtype dtype, int ndim, const int64_t *ne, size_t bytes, qn_buffer **out) {
    qn_buffer *b = calloc(1, sizeof *b);
    if (!b) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_buffer_alloc: out of host memory");
    b->dev = dev;
    b->bytes = bytes;
    b->dtype = dtype;
    b->ndim = ndim;
    for (int i = 0; i < 4; i++) b->ne[i] = i < ndim ? ne[i] : 1;
    atomic_init(&b->refs, 1);
    *out = b;
    return QN_OK;
}

/* Device memory of `bytes`, for a new buffer or a pool bucket. */
qn_status qn_device_alloc_raw(qn_device *dev, size_t bytes, uint64_t *addr) {
    if (dev->backend == QN_BACKEND_CUDA) return qn_cuda_alloc(dev, bytes, addr);
    /* 64-byte alignment: whole cache lines, and any vector load is aligned. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = rounded >= bytes ? aligned_alloc(64, rounded ? rounded : 64) : NULL;
    if (!p) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_buffer_alloc: %zu bytes of host memory not available", bytes);
    *addr = (uint64_t)(uintptr_t)p;
    return QN_OK;
}

void qn_device_free_raw(qn_device *dev, uint64_t addr) {
    if (dev->backend == QN_BACKEND_CUDA) qn_cuda_free(dev, addr);
    else free((void *)(uintptr_t)addr);
}

qn_status qn_buffer_wrap(qn_device *dev, uint64_t addr, size_t bytes, qn_dtype dtype, int ndim, const int64_t *ne,
                         qn_buffer **out) {
    QN_TRY(make(dev, dtype, ndim, ne, bytes, out));
    (*out)->addr = addr;
    return QN_OK;
}

qn_status qn_buffer_alloc(qn_device *dev, qn_dtype dtype, int ndim, const int64_t *ne, qn_buffer **out) {
    if (!dev || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_buffer_alloc: NULL argument");
    *out = NULL;
    size_t bytes;
    QN_TRY(qn_buffer_shape_bytes("qn_buffer_alloc", dtype, ndim, ne, &bytes));
    uint64_t addr;
    QN_TRY(qn_device_alloc_raw(dev, bytes, &addr));
    qn_status s = qn_buffer_wrap(dev, addr, bytes, dtype, ndim, ne, out);
    if (s != QN_OK) qn_device_free_raw(dev, addr);
    return s;
}

qn_status qn_buffer_view(qn_buffer *base, size_t offset, qn_dtype dtype, int ndim, const int64_t *ne,
                         qn_buffer **out) {
    if (!base || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_buffer_view: NULL argument");
    *out = NULL;
    size_t bytes;
    QN_TRY(qn_buffer_shape_bytes("qn_buffer_view", dtype, ndim, ne, &bytes));
    if (offset > base->bytes || bytes > base->bytes - offset)
        return qn_error(QN_ERR_INVALID_ARGUMENT,
                        "qn_buffer_view: %zu bytes at offset %zu do not fit in a buffer of %zu bytes", bytes, offset,
                        base->bytes);
    qn_buffer *owner = base->base ? base->base : base;
    QN_TRY(make(base->dev, dtype, ndim, ne, bytes, out));
    (*out)->base = owner;
    (*out)->addr = base->addr + offset;
    atomic_fetch_add(&owner->refs, 1);
    return QN_OK;
}

static void release(qn_buffer *owner) {
    if (atomic_fetch_sub(&owner->refs, 1) != 1) return;
    qn_device_free_raw(owner->dev, owner->addr);
    free(owner);
}

void qn_buffer_free(qn_buffer *buf) {
    if (!buf) return;
    if (buf->base) {
        release(buf->base);
        free(buf);
    } else if (buf->pool) {
        qn_pool_give_back(buf);
    } else {
        release(buf);
    }
}

size_t qn_buffer_bytes(const qn_buffer *b) { return b ? b->bytes : 0; }
qn_dtype qn_buffer_dtype(const qn_buffer *b) { return b ? b->dtype : QN_F32; }
int qn_buffer_ndim(const qn_buffer *b) { return b ? b->ndim : 0; }
int64_t qn_buffer_ne(const qn_buffer *b, int dim) { return b && dim >= 0 && dim < 4 ? b->ne[dim] : 0; }
qn_device *qn_buffer_device(const qn_buffer *b) { return b ? b->dev : NULL; }

static qn_status check_range(const char *who, qn_buffer *buf, size_t offset, const void *p, size_t bytes) {
    if (!buf) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: buffer is NULL", who);
    if (!p && bytes) return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: host pointer is NULL", who);
    if (offset > buf->bytes || bytes > buf->bytes - offset)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: %zu bytes at offset %zu exceed the buffer's %zu bytes", who,
                        bytes, offset, buf->bytes);
    return QN_OK;
}

qn_status qn_buffer_write(qn_buffer *buf, size_t offset, const void *src, size_t bytes) {
    QN_TRY(check_range("qn_buffer_write", buf, offset, src, bytes));
    if (bytes == 0) return QN_OK;
    if (buf->dev->backend == QN_BACKEND_CUDA) return qn_cuda_write(buf->dev, buf->addr + offset, src, bytes);
    memcpy((char *)(uintptr_t)buf->addr + offset, src, bytes);
    return QN_OK;
}

qn_status qn_buffer_read(qn_buffer *buf, size_t offset, void *dst, size_t bytes) {
    QN_TRY(check_range("qn_buffer_read", buf, offset, dst, bytes));
    if (bytes == 0) return QN_OK;
    if (buf->dev->backend == QN_BACKEND_CUDA) return qn_cuda_read(buf->dev, buf->addr + offset, dst, bytes);
    memcpy(dst, (char *)(uintptr_t)buf->addr + offset, bytes);
    return QN_OK;
}

/* ---- tensors */

qn_tensor qn_tensor_make(qn_buffer *buf, size_t offset, qn_dtype dtype, int64_t ne0, int64_t ne1, int64_t ne2,
                         int64_t ne3) {
    qn_tensor t = {buf, offset, dtype, {ne0, ne1, ne2, ne3}, {0, 0, 0, 0}};
    int64_t blk = qn_dtype_block_elems(dtype);
    t.nb[0] = qn_dtype_block_bytes(dtype);
    t.nb[1] = blk > 0 ? ne0 / blk * t.nb[0] : 0;
    t.nb[2] = t.nb[1] * ne1;
    t.nb[3] = t.nb[2] * ne2;
    return t;
}

qn_tensor qn_tensor_of(qn_buffer *buf) {
    if (!buf) return qn_tensor_make(NULL, 0, QN_F32, 0, 0, 0, 0);
    return qn_tensor_make(buf, 0, buf->dtype, buf->ne[0], buf->ne[1], buf->ne[2], buf->ne[3]);
}

int64_t qn_tensor_nelements(const qn_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }
