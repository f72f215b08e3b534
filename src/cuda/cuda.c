/* The CUDA backend: a device's primary context, memory, pinned staging,
 * streams, kernel modules and launch, graphs and events. */
#include "cuda/cuda.h"
#include "core/registry.h"
#include "cuda/loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Uploads and downloads above this size go through pinned staging buffers:
 * pageable copies of that size run at a fraction of the link's speed. */
#define STAGING_MIN (1u << 20)
#define STAGING_CHUNK (16u << 20)

/* A loaded kernel function, found by (source, defines, name). */
typedef struct {
    const char *source, *defines; /* the registry's strings */
    char fn[64];
    uint64_t hash;
    CUfunction f;
    unsigned smem_opt_in; /* dynamic shared memory limit raised so far */
    bool early;           /* launched with programmatic stream serialization */
} kfunc;

#define KFUNC_SLOTS 4096 /* open addressing; far above the registered functions */

struct qn_cuda_device {
    const qn_cuda_api *api;
    CUdevice cu_dev;
    CUcontext ctx;
    CUstream copy_stream; /* buffer reads and writes */
    pthread_mutex_t copy_lock;
    void *staging[2]; /* pinned, STAGING_CHUNK each, made on first use */
    CUevent staging_done[2];
    pthread_mutex_t kern_lock;
    CUmodule *modules; /* [qn_kernel_variants_count] */
    kfunc *funcs;      /* [KFUNC_SLOTS] */
    int smem_block, smem_sm; /* shared memory: a block may opt in to, a multiprocessor has */
};

struct qn_cuda_event_pair {
    const char *op;
    CUevent start, end;
};

static qn_cuda_device *cu(qn_device *dev) { return dev->cuda; }

/* Make the device's context current on this thread. */
static qn_status enter(qn_device *dev, const char *who) {
    QN_CU(cu(dev)->api->cuCtxSetCurrent(cu(dev)->ctx), who);
    return QN_OK;
}

void qn_cuda_smem_limits(qn_device *dev, int *per_block, int *per_sm) {
    *per_block = cu(dev)->smem_block;
    *per_sm = cu(dev)->smem_sm;
}

void qn_cuda_arch_name(int cc_major, int cc_minor, char *out, size_t out_len) {
    snprintf(out, out_len, "sm_%d%d%s", cc_major, cc_minor, cc_major == 9 && cc_minor == 0 ? "a" : "");
}

qn_status qn_cuda_device_count(int *count) {
    *count = 0;
    const qn_cuda_api *api = qn_cuda_api_get();
    if (!api) return QN_OK; /* no driver: no CUDA devices */
    QN_CU(api->cuDeviceGetCount(count), "qn_device_count");
    return QN_OK;
}

qn_status qn_cuda_device_open(qn_device *dev, int index) {
    const qn_cuda_api *api = qn_cuda_api_get();
    if (!api) return QN_ERR_UNSUPPORTED;
    int count = 0;
    QN_TRY(qn_cuda_device_count(&count));
    if (index < 0 || index >= count)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_device_open: cuda device index %d out of range (%d devices)",
                        index, count);
    qn_cuda_device *c = calloc(1, sizeof *c);
    if (!c) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_device_open: out of host memory");
    c->modules = calloc(qn_kernel_variants_count ? qn_kernel_variants_count : 1, sizeof *c->modules);
    c->funcs = calloc(KFUNC_SLOTS, sizeof *c->funcs);
    if (!c->modules || !c->funcs) {
        free(c->modules);
        free(c->funcs);
        free(c);
        return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_device_open: out of host memory");
    }
    c->api = api;
    pthread_mutex_init(&c->copy_lock, NULL);
    pthread_mutex_init(&c->kern_lock, NULL);
    dev->cuda = c;

    qn_status s = QN_OK;
    CUresult r = api->cuDeviceGet(&c->cu_dev, index);
    if (r == 0) r = api->cuDevicePrimaryCtxRetain(&c->ctx, c->cu_dev);
    if (r != 0) {
        s = qn_cuda_fail(r, "qn_device_open", "cuDevicePrimaryCtxRetain");
        c->ctx = NULL;
        qn_cuda_device_close(dev);
        return s;
    }
    qn_device_info *info = &dev->info;
    int v = 0;
    size_t total = 0;
    if ((s = enter(dev, "qn_device_open")) == QN_OK) {
        r = api->cuDeviceGetName(info->name, sizeof info->name, c->cu_dev);
        if (r == 0) r = api->cuDeviceTotalMem(&total, c->cu_dev);
        if (r == 0) r = api->cuDeviceGetAttribute(&info->cc_major, QN_CU_ATTR_CC_MAJOR, c->cu_dev);
        if (r == 0) r = api->cuDeviceGetAttribute(&info->cc_minor, QN_CU_ATTR_CC_MINOR, c->cu_dev);
        if (r == 0) r = api->cuDeviceGetAttribute(&info->sm_count, QN_CU_ATTR_SM_COUNT, c->cu_dev);
        if (r == 0) r = api->cuDeviceGetAttribute(&v, QN_CU_ATTR_L2_SIZE, c->cu_dev);
        if (r == 0) r = api->cuDeviceGetAttribute(&c->smem_block, QN_CU_ATTR_SMEM_OPTIN, c->cu_dev);
        if (r == 0) r = api->cuDeviceGetAttribute(&c->smem_sm, QN_CU_ATTR_SMEM_PER_SM, c->cu_dev);
        if (r == 0) r = api->cuStreamCreate(&c->copy_stream, QN_CU_STREAM_NON_BLOCKING);
        if (r != 0) s = qn_cuda_fail(r, "qn_device_open", "querying the device");
    }
    if (s != QN_OK) {
        qn_cuda_device_close(dev);
        return s;
    }
    info->l2_bytes = v;
    info->total_memory = total;
    qn_cuda_arch_name(info->cc_major, info->cc_minor, info->arch, sizeof info->arch);
    return QN_OK;
}

void qn_cuda_device_close(qn_device *dev) {
    qn_cuda_device *c = cu(dev);
    if (!c) return;
    if (c->ctx && c->api->cuCtxSetCurrent(c->ctx) == 0) {
        c->api->cuCtxSynchronize();
        for (size_t i = 0; i < qn_kernel_variants_count; i++)
            if (c->modules[i]) c->api->cuModuleUnload(c->modules[i]);
        for (int i = 0; i < 2; i++) {
            if (c->staging[i]) c->api->cuMemFreeHost(c->staging[i]);
            if (c->staging_done[i]) c->api->cuEventDestroy(c->staging_done[i]);
        }
        if (c->copy_stream) c->api->cuStreamDestroy(c->copy_stream);
        c->api->cuDevicePrimaryCtxRelease(c->cu_dev);
    }
    pthread_mutex_destroy(&c->copy_lock);
    pthread_mutex_destroy(&c->kern_lock);
    free(c->modules);
    free(c->funcs);
    free(c);
    dev->cuda = NULL;
}

qn_status qn_cuda_mem_info(qn_device *dev, uint64_t *free_bytes, uint64_t *total_bytes) {
    QN_TRY(enter(dev, "qn_device_info_get"));
    size_t f = 0, t = 0;
    QN_CU(cu(dev)->api->cuMemGetInfo(&f, &t), "qn_device_info_get");
    *free_bytes = f;
    *total_bytes = t;
    return QN_OK;
}

int qn_cuda_smem_optin(const qn_device *dev) { return dev->cuda->smem_block; }

qn_status qn_cuda_synchronize(qn_device *dev) {
    QN_TRY(enter(dev, "qn_device_synchronize"));
    QN_CU(cu(dev)->api->cuCtxSynchronize(), "qn_device_synchronize");
    return QN_OK;
}

/* ---- memory */

/* Every allocation carries this much slack past its end: kernels copy
 * rows in aligned 16-byte pieces (cp.async with a source size), and the
 * piece holding a tensor's last bytes may reach up to 15 bytes beyond them. */
#define QN_CUDA_ALLOC_SLACK 16

qn_status qn_cuda_alloc(qn_device *dev, size_t bytes, uint64_t *addr) {
    QN_TRY(enter(dev, "qn_buffer_alloc"));
    CUdeviceptr p = 0;
    if (bytes > SIZE_MAX - QN_CUDA_ALLOC_SLACK)
        return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_buffer_alloc: %zu bytes is more than any device holds", bytes);
    CUresult r = cu(dev)->api->cuMemAlloc(&p, bytes + QN_CUDA_ALLOC_SLACK);
    if (r != 0) {
        char what[96];
        snprintf(what, sizeof what, "cuMemAlloc(%zu bytes)", bytes);
        return qn_cuda_fail(r, "qn_buffer_alloc", what);
    }
    *addr = p;
    return QN_OK;
}

void qn_cuda_free(qn_device *dev, uint64_t addr) {
    if (enter(dev, "qn_buffer_free") == QN_OK) cu(dev)->api->cuMemFree(addr);
}

/* Pinned staging is made on the first large copy; a failure (no pinned memory
 * left) falls back to plain pageable copies. */
static bool have_staging(qn_cuda_device *c) {
    for (int i = 0; i < 2; i++) {
        if (c->staging[i]) continue;
        if (c->api->cuMemHostAlloc(&c->staging[i], STAGING_CHUNK, QN_CU_MEMHOSTALLOC_PORTABLE) != 0 ||
            c->api->cuEventCreate(&c->staging_done[i], QN_CU_EVENT_DISABLE_TIMING) != 0) {
            if (c->staging[i]) c->api->cuMemFreeHost(c->staging[i]);
            c->staging[i] = NULL;
            return false;
        }
    }
    return true;
}

/* Copy host <-> device on the copy stream. Large copies alternate between two
 * pinned chunks, so the host's memcpy of one chunk overlaps the DMA of the
 * other. */
static qn_status transfer(qn_device *dev, uint64_t addr, void *host, size_t bytes, bool to_device,
                          const char *who) {
    QN_TRY(enter(dev, who));
    qn_cuda_device *c = cu(dev);
    const qn_cuda_api *api = c->api;
    CUresult r = 0;
    const char *what = to_device ? "cuMemcpyHtoDAsync" : "cuMemcpyDtoHAsync";
    pthread_mutex_lock(&c->copy_lock);
    if (bytes < STAGING_MIN || !have_staging(c)) {
        r = to_device ? api->cuMemcpyHtoDAsync(addr, host, bytes, c->copy_stream)
                      : api->cuMemcpyDtoHAsync(host, addr, bytes, c->copy_stream);
        if (r == 0) r = api->cuStreamSynchronize(c->copy_stream);
    } else if (to_device) {
        for (size_t off = 0, k = 0; off < bytes && r == 0; off += STAGING_CHUNK, k ^= 1) {
            size_t n = bytes - off < STAGING_CHUNK ? bytes - off : STAGING_CHUNK;
            r = api->cuEventSynchronize(c->staging_done[k]); /* chunk k free again */
            if (r) break;
            memcpy(c->staging[k], (char *)host + off, n);
            r = api->cuMemcpyHtoDAsync(addr + off, c->staging[k], n, c->copy_stream);
            if (r == 0) r = api->cuEventRecord(c->staging_done[k], c->copy_stream);
        }
        CUresult r2 = api->cuStreamSynchronize(c->copy_stream);
        if (r == 0) r = r2;
    } else {
        /* Download chunk k+1 while the host copies chunk k out. */
        size_t nchunks = (bytes + STAGING_CHUNK - 1) / STAGING_CHUNK;
        for (size_t i = 0; i <= nchunks && r == 0; i++) {
            if (i < nchunks) {
                size_t off = i * STAGING_CHUNK, n = bytes - off < STAGING_CHUNK ? bytes - off : STAGING_CHUNK;
                r = api->cuMemcpyDtoHAsync(c->staging[i & 1], addr + off, n, c->copy_stream);
                if (r == 0) r = api->cuEventRecord(c->staging_done[i & 1], c->copy_stream);
            }
            if (i > 0 && r == 0) {
                size_t j = i - 1, off = j * STAGING_CHUNK;
                size_t n = bytes - off < STAGING_CHUNK ? bytes - off : STAGING_CHUNK;
                r = api->cuEventSynchronize(c->staging_done[j & 1]);
                if (r == 0) memcpy((char *)host + off, c->staging[j & 1], n);
            }
        }
        CUresult r2 = api->cuStreamSynchronize(c->copy_stream);
        if (r == 0) r = r2;
    }
    pthread_mutex_unlock(&c->copy_lock);
    if (r != 0) return qn_cuda_fail(r, who, what);
    return QN_OK;
}

qn_status qn_cuda_write(qn_device *dev, uint64_t addr, const void *src, size_t bytes) {
    return transfer(dev, addr, (void *)src, bytes, true, "qn_buffer_write");
}

qn_status qn_cuda_read(qn_device *dev, uint64_t addr, void *dst, size_t bytes) {
    return transfer(dev, addr, dst, bytes, false, "qn_buffer_read");
}

/* ---- encoders */

qn_status qn_cuda_encoder_init(qn_encoder *enc) {
    QN_TRY(enter(enc->dev, "qn_encoder_create"));
    CUstream s = NULL;
    QN_CU(cu(enc->dev)->api->cuStreamCreate(&s, QN_CU_STREAM_NON_BLOCKING), "qn_encoder_create");
    enc->stream = s;
    uint64_t flags;
    int zero = 0;
    qn_status st = qn_cuda_alloc(enc->dev, sizeof zero, &flags);
    if (st == QN_OK) {
        enc->flags_addr = flags;
        st = qn_cuda_write(enc->dev, flags, &zero, sizeof zero);
    }
    if (st != QN_OK) qn_cuda_encoder_fini(enc);
    return st;
}

void qn_cuda_encoder_fini(qn_encoder *enc) {
    const qn_cuda_api *api = cu(enc->dev)->api;
    if (enter(enc->dev, "qn_encoder_destroy") != QN_OK) return;
    if (enc->stream) {
        api->cuStreamSynchronize(enc->stream);
        api->cuStreamDestroy(enc->stream);
        enc->stream = NULL;
    }
    if (enc->flags_addr != (uint64_t)(uintptr_t)&enc->cpu_flags) api->cuMemFree(enc->flags_addr);
    if (enc->merge_scratch) api->cuMemFree(enc->merge_scratch);
    enc->merge_scratch = 0;
    enc->flags_addr = (uint64_t)(uintptr_t)&enc->cpu_flags;
    if (enc->scratch) api->cuMemFree(enc->scratch);
    for (size_t i = 0; i < enc->nretired; i++) api->cuMemFree(enc->retired[i]);
    free(enc->retired);
    enc->scratch = 0;
    enc->retired = NULL;
    enc->nretired = 0;
    for (size_t i = 0; i < enc->evcap; i++) {
        if (enc->evs[i].start) api->cuEventDestroy(enc->evs[i].start);
        if (enc->evs[i].end) api->cuEventDestroy(enc->evs[i].end);
    }
    free(enc->evs);
}

qn_status qn_cuda_encoder_merge_scratch(qn_encoder *enc, uint64_t *addr) {
    if (!enc->merge_scratch) {
        void *zero = calloc(1, QN_CUDA_MERGE_SCRATCH_BYTES);
        if (!zero) return qn_error(QN_ERR_OUT_OF_MEMORY, "encoder scratch: out of host memory");
        uint64_t p = 0;
        qn_status s = qn_cuda_alloc(enc->dev, QN_CUDA_MERGE_SCRATCH_BYTES, &p);
        if (s == QN_OK) s = qn_cuda_write(enc->dev, p, zero, QN_CUDA_MERGE_SCRATCH_BYTES);
        free(zero);
        if (s != QN_OK) {
            if (p) qn_cuda_free(enc->dev, p);
            return s;
        }
        enc->merge_scratch = p;
    }
    *addr = enc->merge_scratch;
    return QN_OK;
}

qn_status qn_cuda_encoder_wait(qn_encoder *enc) {
    const qn_cuda_api *api = cu(enc->dev)->api;
    QN_TRY(enter(enc->dev, "qn_encoder_wait"));
    QN_CU(api->cuStreamSynchronize(enc->stream), "qn_encoder_wait");
    enc->pdl_lo = enc->pdl_hi = 0; /* a flag copy may follow: the next kernel overlaps nothing */
    if (!enc->flags_armed) return QN_OK;
    int flags = 0, zero = 0;
    QN_CU(api->cuMemcpyDtoHAsync(&flags, enc->flags_addr, sizeof flags, enc->stream), "qn_encoder_wait");
    if (flags) QN_CU(api->cuMemcpyHtoDAsync(enc->flags_addr, &zero, sizeof zero, enc->stream), "qn_encoder_wait");
    QN_CU(api->cuStreamSynchronize(enc->stream), "qn_encoder_wait");
    return qn_encoder_flags_status(enc, flags);
}

qn_status qn_cuda_encoder_scratch(qn_encoder *enc, size_t bytes, uint64_t *addr) {
    if (bytes > enc->scratch_bytes) {
        /* grow by half again at least, so a run of rising sizes allocates
         * (and retires) a few areas, not one per size */
        size_t want = bytes > enc->scratch_bytes / 2 * 3 ? bytes : enc->scratch_bytes / 2 * 3;
        uint64_t *r = realloc(enc->retired, (enc->nretired + 1) * sizeof *r);
        if (!r) return qn_error(QN_ERR_OUT_OF_MEMORY, "encoder scratch: out of host memory");
        enc->retired = r;
        uint64_t p;
        QN_TRY(qn_cuda_alloc(enc->dev, want, &p));
        if (enc->scratch) enc->retired[enc->nretired++] = enc->scratch;
        enc->scratch = p;
        enc->scratch_bytes = want;
    }
    *addr = enc->scratch;
    return QN_OK;
}

qn_status qn_cuda_encoder_after(qn_encoder *waiter, qn_encoder *signaler) {
    const qn_cuda_api *api = cu(waiter->dev)->api;
    QN_TRY(enter(waiter->dev, "qn_worker"));
    CUevent ev;
    QN_CU(api->cuEventCreate(&ev, QN_CU_EVENT_DISABLE_TIMING), "qn_worker");
    CUresult r = api->cuEventRecord(ev, signaler->stream);
    if (r == 0) r = api->cuStreamWaitEvent(waiter->stream, ev, 0);
    waiter->pdl_lo = waiter->pdl_hi = 0; /* the next kernel waits for the signaler's work in full */
    api->cuEventDestroy(ev); /* released once the wait is satisfied */
    if (r != 0) return qn_cuda_fail(r, "qn_worker", "cuStreamWaitEvent");
    return QN_OK;
}

/* An event pair for the next profiled op (pairs are reused after a clear). */
static qn_status profile_pair(qn_encoder *enc, const char *op, qn_cuda_event_pair **out) {
    const qn_cuda_api *api = cu(enc->dev)->api;
    if (enc->nev == enc->evcap) {
        size_t cap = enc->evcap ? enc->evcap * 2 : 64;
        qn_cuda_event_pair *e = realloc(enc->evs, cap * sizeof *e);
        if (!e) return qn_error(QN_ERR_OUT_OF_MEMORY, "%s: out of host memory for profiling", op);
        memset(e + enc->evcap, 0, (cap - enc->evcap) * sizeof *e);
        enc->evs = e;
        enc->evcap = cap;
    }
    qn_cuda_event_pair *p = &enc->evs[enc->nev];
    if (!p->start) QN_CU(api->cuEventCreate(&p->start, 0), op);
    if (!p->end) QN_CU(api->cuEventCreate(&p->end, 0), op);
    p->op = op;
    enc->nev++;
    *out = p;
    return QN_OK;
}

qn_status qn_cuda_encoder_profile(qn_encoder *enc) {
    QN_TRY(enter(enc->dev, "qn_encoder_profile"));
    for (size_t i = enc->ntimes; i < enc->nev; i++) {
        float ms = 0;
        QN_CU(cu(enc->dev)->api->cuEventElapsedTime(&ms, enc->evs[i].start, enc->evs[i].end),
              "qn_encoder_profile");
        QN_TRY(qn_encoder_note_time(enc, enc->evs[i].op, ms));
    }
    return QN_OK;
}

void qn_cuda_encoder_profile_clear(qn_encoder *enc) { enc->nev = 0; }

/* ---- kernels */

static uint64_t fnv(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return (h ^ 0xff) * 0x100000001b3ULL;
}

/* Programmatic dependent launch: griddepcontrol exists from sm_90 on;
 * QUANTA_PDL=0 turns the early launches off (to compare, or to rule them
 * out). */
static bool pdl_enabled(const qn_device *dev) {
    const char *pdl = getenv("QUANTA_PDL");
    return dev->info.cc_major >= 9 && !(pdl && strcmp(pdl, "0") == 0);
}

static qn_status find_function(qn_device *dev, const char *source, const char *defines, const char *fn,
                               kfunc **out) {
    qn_cuda_device *c = cu(dev);
    uint64_t h = fnv(fnv(fnv(0xcbf29ce484222325ULL, source), defines), fn);
    if (strlen(fn) >= sizeof c->funcs[0].fn)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "%s: kernel function name too long", fn);
    qn_status s = QN_OK;
    pthread_mutex_lock(&c->kern_lock);
    size_t i = h % KFUNC_SLOTS;
    for (size_t probes = 0; probes < KFUNC_SLOTS; probes++, i = (i + 1) % KFUNC_SLOTS) {
        kfunc *k = &c->funcs[i];
        if (k->f && k->hash == h && strcmp(k->fn, fn) == 0 && strcmp(k->source, source) == 0 &&
            strcmp(k->defines, defines) == 0) {
            *out = k;
            goto done;
        }
        if (k->f) continue;
        /* Not loaded yet: compile (or fetch from the cache) and load. */
        size_t vi;
        if ((s = qn_registry_find(source, defines, &vi)) != QN_OK) goto done;
        if (!c->modules[vi]) {
            const void *image;
            size_t size;
            bool is_ptx;
            if ((s = qn_registry_image(vi, dev->info.arch, &image, &size, &is_ptx)) != QN_OK) goto done;
            CUresult r = c->api->cuModuleLoadData(&c->modules[vi], image);
            if (r != 0) {
                c->modules[vi] = NULL;
                s = qn_cuda_fail(r, source, "cuModuleLoadData");
                goto done;
            }
        }
        CUresult r = c->api->cuModuleGetFunction(&k->f, c->modules[vi], fn);
        if (r != 0) {
            k->f = NULL;
            char what[160];
            snprintf(what, sizeof what, "cuModuleGetFunction(%s)", fn);
            s = qn_cuda_fail(r, source, what);
            goto done;
        }
        k->source = qn_kernel_variants[vi].source;
        k->defines = qn_kernel_variants[vi].defines;
        snprintf(k->fn, sizeof k->fn, "%s", fn);
        k->hash = h;
        k->smem_opt_in = 48 * 1024;
        k->early = pdl_enabled(dev) && qn_registry_grid_waits(vi);
        *out = k;
        goto done;
    }
    s = qn_error(QN_ERR_UNSUPPORTED, "%s: kernel function table full", fn);
done:
    pthread_mutex_unlock(&c->kern_lock);
    return s;
}

bool qn_cuda_pdl_overlaps(const qn_encoder *enc, uint64_t lo, uint64_t hi) {
    return lo < enc->pdl_hi && enc->pdl_lo < hi;
}

static qn_status launch(qn_encoder *enc, const char *op, const char *source, const char *defines, const char *fn,
                        qn_dim3 grid, qn_dim3 block, unsigned smem, void **args, bool rules, uint64_t writes_lo,
                        uint64_t writes_hi) {
    qn_device *dev = enc->dev;
    const qn_cuda_api *api = cu(dev)->api;
    QN_TRY(enter(dev, op));
    kfunc *k = NULL;
    QN_TRY(find_function(dev, source, defines, fn, &k));
    if (smem > k->smem_opt_in) {
        QN_CU(api->cuFuncSetAttribute(k->f, QN_CU_FUNC_ATTR_MAX_DYN_SMEM, (int)smem), op);
        k->smem_opt_in = smem;
    }
    /* Profiling records an event before and after the kernel; while a graph
     * is captured they become event nodes of the graph (the external flag),
     * so a replay times each op without the host's launch gaps. */
    qn_cuda_event_pair *p = NULL;
    const unsigned rec_flags = enc->capturing ? QN_CU_EVENT_RECORD_EXTERNAL : 0;
    if (enc->profiling) {
        QN_TRY(profile_pair(enc, op, &p));
        QN_CU(api->cuEventRecordWithFlags(p->start, enc->stream, rec_flags), op);
    }
    /* A kernel that waits for its predecessor itself (QN_GRID_WAIT, or the
     * rules of qn_cuda_launch_pdl) may start while that one finishes: its
     * launch latency hides behind the other's tail, about a microsecond a
     * kernel in a decode step. */
    const bool early = rules ? pdl_enabled(dev) : k->early;
    qn_cu_launch_attr attr = {.id = QN_CU_LAUNCH_ATTR_PROGRAMMATIC_STREAM_SERIALIZATION};
    attr.value.programmatic_stream_serialization_allowed = 1;
    const qn_cu_launch_config cfg = {grid.x, grid.y, grid.z, block.x, block.y, block.z, smem, enc->stream, &attr, 1};
    CUresult r = early ? api->cuLaunchKernelEx(&cfg, k->f, args, NULL)
                       : api->cuLaunchKernel(k->f, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem,
                                             enc->stream, args, NULL);
    if (r != 0) {
        char what[200];
        snprintf(what, sizeof what, "cuLaunchKernel(%s, grid %ux%ux%u, block %ux%ux%u, smem %u)", fn,
                 grid.x, grid.y, grid.z, block.x, block.y, block.z, smem);
        return qn_cuda_fail(r, op, what);
    }
    /* What the next kernel may find still being written: a kernel launched
     * by the rules names its writes; of any other, assume everything. */
    enc->pdl_lo = rules ? writes_lo : 0;
    enc->pdl_hi = rules ? writes_hi : UINT64_MAX;
    if (p) QN_CU(api->cuEventRecordWithFlags(p->end, enc->stream, rec_flags), op);
    return QN_OK;
}

qn_status qn_cuda_launch(qn_encoder *enc, const char *op, const char *source, const char *defines,
                         const char *fn, qn_dim3 grid, qn_dim3 block, unsigned smem, void **args) {
    return launch(enc, op, source, defines, fn, grid, block, smem, args, false, 0, 0);
}

qn_status qn_cuda_launch_pdl(qn_encoder *enc, const char *op, const char *source, const char *defines,
                             const char *fn, qn_dim3 grid, qn_dim3 block, unsigned smem, void **args,
                             uint64_t writes_lo, uint64_t writes_hi) {
    return launch(enc, op, source, defines, fn, grid, block, smem, args, true, writes_lo, writes_hi);
}

/* ---- graphs */

qn_status qn_cuda_graph_begin(qn_encoder *enc) {
    QN_TRY(enter(enc->dev, "qn_graph_begin"));
    enc->pdl_lo = enc->pdl_hi = 0; /* no kernel before the next one can overlap it */
    /* Relaxed: the first launch of a kernel may load its module mid-capture. */
    QN_CU(cu(enc->dev)->api->cuStreamBeginCapture(enc->stream, QN_CU_CAPTURE_MODE_RELAXED),
          "qn_graph_begin");
    return QN_OK;
}

qn_status qn_cuda_graph_end(qn_encoder *enc, qn_graph *g) {
    const qn_cuda_api *api = cu(enc->dev)->api;
    QN_TRY(enter(enc->dev, "qn_graph_end"));
    enc->pdl_lo = enc->pdl_hi = 0; /* no kernel before the next one can overlap it */
    CUgraph graph = NULL;
    QN_CU(api->cuStreamEndCapture(enc->stream, &graph), "qn_graph_end");
    size_t n = 0;
    CUresult r = api->cuGraphGetNodes(graph, NULL, &n);
    CUgraphExec exec = NULL;
    if (r == 0) r = api->cuGraphInstantiateWithFlags(&exec, graph, 0);
    if (r != 0) {
        api->cuGraphDestroy(graph);
        return qn_cuda_fail(r, "qn_graph_end", "cuGraphInstantiateWithFlags");
    }
    g->graph = graph;
    g->exec = exec;
    g->nodes = n;
    return QN_OK;
}

qn_status qn_cuda_graph_launch(qn_graph *g, qn_encoder *enc) {
    QN_TRY(enter(enc->dev, "qn_graph_launch"));
    enc->pdl_lo = enc->pdl_hi = 0; /* no kernel before the next one can overlap it */
    QN_CU(cu(enc->dev)->api->cuGraphLaunch(g->exec, enc->stream), "qn_graph_launch");
    return QN_OK;
}

void qn_cuda_graph_destroy(qn_graph *g) {
    const qn_cuda_api *api = cu(g->dev)->api;
    if (enter(g->dev, "qn_graph_destroy") != QN_OK) return;
    if (g->exec) api->cuGraphExecDestroy(g->exec);
    if (g->graph) api->cuGraphDestroy(g->graph);
}
