/* Devices: choosing a backend and opening it. */
#include "core/internal.h"
#include "cuda/cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *qn_backend_name(qn_backend b) {
    switch (b) {
    case QN_BACKEND_AUTO: return "auto";
    case QN_BACKEND_CPU: return "cpu";
    case QN_BACKEND_CUDA: return "cuda";
    }
    return "?";
}

qn_status qn_device_count(qn_backend b, int *count) {
    if (!count) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_device_count: count is NULL");
    *count = 0;
    switch (b) {
    case QN_BACKEND_CPU: *count = 1; return QN_OK;
    case QN_BACKEND_CUDA: return qn_cuda_device_count(count);
    default: return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_device_count: backend %d is not cpu or cuda", (int)b);
    }
}

/* QN_BACKEND_AUTO: QUANTA_BACKEND decides, else a usable GPU, else the CPU. */
static qn_status resolve_auto(qn_backend *b, int *index) {
    const char *env = getenv("QUANTA_BACKEND");
    const char *env_index = getenv("QUANTA_DEVICE");
    if (env_index && *env_index) {
        char *end;
        long v = strtol(env_index, &end, 10);
        if (*end || v < 0 || v > 1024)
            return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_device_open: QUANTA_DEVICE='%s' is not a device index",
                            env_index);
        *index = (int)v;
    }
    if (env && *env && strcmp(env, "auto") != 0) {
        if (strcmp(env, "cpu") == 0) *b = QN_BACKEND_CPU;
        else if (strcmp(env, "cuda") == 0) *b = QN_BACKEND_CUDA;
        else
            return qn_error(QN_ERR_INVALID_ARGUMENT,
                            "qn_device_open: QUANTA_BACKEND='%s' (expected cpu, cuda or auto)", env);
        return QN_OK;
    }
    int n = 0;
    *b = qn_cuda_device_count(&n) == QN_OK && n > 0 ? QN_BACKEND_CUDA : QN_BACKEND_CPU;
    if (*b == QN_BACKEND_CPU) *index = 0;
    return QN_OK;
}

qn_status qn_device_open(qn_backend b, int index, qn_device **out) {
    if (!out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_device_open: out is NULL");
    *out = NULL;
    if (b == QN_BACKEND_AUTO) QN_TRY(resolve_auto(&b, &index));
    if (b != QN_BACKEND_CPU && b != QN_BACKEND_CUDA)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_device_open: backend %d is not auto, cpu or cuda", (int)b);
    if (b == QN_BACKEND_CPU && index != 0)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_device_open: cpu device index %d (only 0 exists)", index);
    qn_device *dev = calloc(1, sizeof *dev);
    if (!dev) return qn_error(QN_ERR_OUT_OF_MEMORY, "qn_device_open: out of host memory");
    dev->backend = b;
    dev->info.backend = b;
    dev->info.index = index;
    qn_status s = b == QN_BACKEND_CPU ? qn_cpu_device_open(dev) : qn_cuda_device_open(dev, index);
    if (s != QN_OK) {
        free(dev);
        return s;
    }
    *out = dev;
    return QN_OK;
}

void qn_device_close(qn_device *dev) {
    if (!dev) return;
    if (dev->cpu) qn_cpu_device_close(dev);
    if (dev->cuda) qn_cuda_device_close(dev);
    free(dev);
}

qn_backend qn_device_backend(const qn_device *dev) { return dev ? dev->backend : QN_BACKEND_AUTO; }

qn_status qn_device_info_get(qn_device *dev, qn_device_info *out) {
    if (!dev || !out) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_device_info_get: NULL argument");
    *out = dev->info;
    if (dev->backend == QN_BACKEND_CUDA) return qn_cuda_mem_info(dev, &out->free_memory, &out->total_memory);
    long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    out->free_memory = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    return QN_OK;
}

qn_status qn_device_synchronize(qn_device *dev) {
    if (!dev) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_device_synchronize: dev is NULL");
    /* CPU encoders finish their work inside commit. */
    return dev->backend == QN_BACKEND_CUDA ? qn_cuda_synchronize(dev) : QN_OK;
}
