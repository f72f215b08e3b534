/* dlopen of libcuda and libnvrtc; see loader.h for why. Each library is
 * loaded once per process (pthread_once); a failure is remembered with its
 * reason, so every later call reports the same message. */
#include "cuda/loader.h"
#include "core/error.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qn_cuda_api cuda_api;
static const qn_cuda_api *cuda_ok;
static char cuda_why[512];
static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;

static qn_nvrtc_api nvrtc_api;
static const qn_nvrtc_api *nvrtc_ok;
static char nvrtc_why[512];
static pthread_once_t nvrtc_once = PTHREAD_ONCE_INIT;

/* Look up each symbol in `names` (a NULL-terminated list of alternatives,
 * newest first) and store it in *slot. */
static int resolve(void *lib, void **slot, const char *const *names, char *why, size_t why_len) {
    for (const char *const *n = names; *n; n++) {
        void *p = dlsym(lib, *n);
        if (p) {
            *slot = p;
            return 1;
        }
    }
    snprintf(why, why_len, "symbol %s not found", names[0]);
    return 0;
}

#define SYM(api, field, ...)                                                              \
    do {                                                                                  \
        static const char *const names_[] = {__VA_ARGS__, NULL};                          \
        if (!resolve(lib, (void **)&(api).field, names_, why, sizeof why)) goto fail;     \
    } while (0)

static void load_cuda(void) {
    char why[256] = "";
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libcuda.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(cuda_why, sizeof cuda_why, "the NVIDIA driver (libcuda.so.1) is not installed");
        return;
    }
    SYM(cuda_api, cuInit, "cuInit");
    SYM(cuda_api, cuDriverGetVersion, "cuDriverGetVersion");
    SYM(cuda_api, cuGetErrorName, "cuGetErrorName");
    SYM(cuda_api, cuGetErrorString, "cuGetErrorString");
    SYM(cuda_api, cuDeviceGetCount, "cuDeviceGetCount");
    SYM(cuda_api, cuDeviceGet, "cuDeviceGet");
    SYM(cuda_api, cuDeviceGetName, "cuDeviceGetName");
    SYM(cuda_api, cuDeviceTotalMem, "cuDeviceTotalMem_v2");
    SYM(cuda_api, cuDeviceGetAttribute, "cuDeviceGetAttribute");
    SYM(cuda_api, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    SYM(cuda_api, cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
    SYM(cuda_api, cuCtxSetCurrent, "cuCtxSetCurrent");
    SYM(cuda_api, cuCtxSynchronize, "cuCtxSynchronize");
    SYM(cuda_api, cuMemGetInfo, "cuMemGetInfo_v2");
    SYM(cuda_api, cuMemAlloc, "cuMemAlloc_v2");
    SYM(cuda_api, cuMemFree, "cuMemFree_v2");
    SYM(cuda_api, cuMemHostAlloc, "cuMemHostAlloc");
    SYM(cuda_api, cuMemFreeHost, "cuMemFreeHost");
    SYM(cuda_api, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
    SYM(cuda_api, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
    SYM(cuda_api, cuStreamCreate, "cuStreamCreate");
    SYM(cuda_api, cuStreamDestroy, "cuStreamDestroy_v2");
    SYM(cuda_api, cuStreamSynchronize, "cuStreamSynchronize");
    SYM(cuda_api, cuStreamWaitEvent, "cuStreamWaitEvent");
    SYM(cuda_api, cuStreamBeginCapture, "cuStreamBeginCapture_v2");
    SYM(cuda_api, cuStreamEndCapture, "cuStreamEndCapture");
    SYM(cuda_api, cuEventCreate, "cuEventCreate");
    SYM(cuda_api, cuEventDestroy, "cuEventDestroy_v2");
    SYM(cuda_api, cuEventRecord, "cuEventRecord");
    SYM(cuda_api, cuEventSynchronize, "cuEventSynchronize");
    /* _v2 arrived with driver 12.8; older drivers have only the first one */
    SYM(cuda_api, cuEventElapsedTime, "cuEventElapsedTime_v2", "cuEventElapsedTime");
    SYM(cuda_api, cuModuleLoadData, "cuModuleLoadData");
    SYM(cuda_api, cuModuleUnload, "cuModuleUnload");
    SYM(cuda_api, cuModuleGetFunction, "cuModuleGetFunction");
    SYM(cuda_api, cuFuncSetAttribute, "cuFuncSetAttribute");
    SYM(cuda_api, cuLaunchKernel, "cuLaunchKernel");
    cuda_api.cuLaunchKernelEx = (CUresult(*)(const qn_cu_launch_config *, CUfunction, void **, void **))dlsym(lib, "cuLaunchKernelEx");
    SYM(cuda_api, cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags");
    SYM(cuda_api, cuGraphLaunch, "cuGraphLaunch");
    SYM(cuda_api, cuGraphExecDestroy, "cuGraphExecDestroy");
    SYM(cuda_api, cuGraphDestroy, "cuGraphDestroy");
    SYM(cuda_api, cuGraphGetNodes, "cuGraphGetNodes");
    CUresult r = cuda_api.cuInit(0);
    if (r != QN_CUDA_SUCCESS) {
        const char *name = "?";
        cuda_api.cuGetErrorName(r, &name);
        snprintf(cuda_why, sizeof cuda_why, "cuInit failed: %s", name);
        return;
    }
    cuda_ok = &cuda_api;
    return;
fail:
    snprintf(cuda_why, sizeof cuda_why, "libcuda.so.1 is too old: %s", why);
}

static void *open_nvrtc(void) {
    const char *env = getenv("QUANTA_NVRTC");
    if (env && *env) return dlopen(env, RTLD_NOW | RTLD_LOCAL);
    static const char *const names[] = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12",
                                        "libnvrtc.so.11.2", NULL};
    for (const char *const *n = names; *n; n++) {
        void *lib = dlopen(*n, RTLD_NOW | RTLD_LOCAL);
        if (lib) return lib;
    }
    /* The toolkit's default home is often not on the loader's path. */
    const char *homes[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
    for (size_t i = 0; i < sizeof homes / sizeof homes[0]; i++) {
        if (!homes[i] || !*homes[i]) continue;
        for (const char *const *n = names; *n; n++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/lib64/%s", homes[i], *n);
            void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (lib) return lib;
        }
    }
    return NULL;
}

static void load_nvrtc(void) {
    char why[256] = "";
    void *lib = open_nvrtc();
    if (!lib) {
        snprintf(nvrtc_why, sizeof nvrtc_why,
                 "NVRTC (libnvrtc.so) was not found: install the CUDA toolkit's NVRTC, "
                 "add its folder to LD_LIBRARY_PATH or set QUANTA_NVRTC to the file");
        return;
    }
    SYM(nvrtc_api, nvrtcGetErrorString, "nvrtcGetErrorString");
    SYM(nvrtc_api, nvrtcVersion, "nvrtcVersion");
    SYM(nvrtc_api, nvrtcGetNumSupportedArchs, "nvrtcGetNumSupportedArchs");
    SYM(nvrtc_api, nvrtcGetSupportedArchs, "nvrtcGetSupportedArchs");
    SYM(nvrtc_api, nvrtcCreateProgram, "nvrtcCreateProgram");
    SYM(nvrtc_api, nvrtcDestroyProgram, "nvrtcDestroyProgram");
    SYM(nvrtc_api, nvrtcCompileProgram, "nvrtcCompileProgram");
    SYM(nvrtc_api, nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize");
    SYM(nvrtc_api, nvrtcGetProgramLog, "nvrtcGetProgramLog");
    SYM(nvrtc_api, nvrtcGetCUBINSize, "nvrtcGetCUBINSize");
    SYM(nvrtc_api, nvrtcGetCUBIN, "nvrtcGetCUBIN");
    SYM(nvrtc_api, nvrtcGetPTXSize, "nvrtcGetPTXSize");
    SYM(nvrtc_api, nvrtcGetPTX, "nvrtcGetPTX");
    nvrtc_ok = &nvrtc_api;
    return;
fail:
    snprintf(nvrtc_why, sizeof nvrtc_why, "libnvrtc is too old: %s", why);
}

const qn_cuda_api *qn_cuda_api_get(void) {
    pthread_once(&cuda_once, load_cuda);
    if (!cuda_ok) qn_error(QN_ERR_UNSUPPORTED, "CUDA backend unavailable: %s", cuda_why);
    return cuda_ok;
}

const qn_nvrtc_api *qn_nvrtc_api_get(void) {
    pthread_once(&nvrtc_once, load_nvrtc);
    if (!nvrtc_ok) qn_error(QN_ERR_UNSUPPORTED, "%s", nvrtc_why);
    return nvrtc_ok;
}

qn_status qn_cuda_fail(CUresult r, const char *who, const char *what) {
    const char *name = "CUDA_ERROR_UNKNOWN", *desc = "";
    if (cuda_ok) {
        cuda_ok->cuGetErrorName(r, &name);
        cuda_ok->cuGetErrorString(r, &desc);
    }
    return qn_error(r == QN_CUDA_ERROR_OUT_OF_MEMORY ? QN_ERR_OUT_OF_MEMORY : QN_ERR_DEVICE,
                    "%s: %s failed: %s (%s)", who, what, name ? name : "?", desc ? desc : "");
}
