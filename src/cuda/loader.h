/* The CUDA driver API and NVRTC, loaded with dlopen at run time.
 *
 * quanta builds with a C compiler alone: the few types it needs from cuda.h
 * and nvrtc.h are declared here (they are stable C ABI), and the functions
 * are looked up by their versioned symbol names. Where libcuda is missing the
 * CUDA backend reports no devices and the CPU backend serves; where NVRTC is
 * missing kernels cannot be compiled and the CUDA backend says so. */
#ifndef QN_CUDA_LOADER_H
#define QN_CUDA_LOADER_H

#include "quanta.h"

#include <stddef.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;

enum {
    QN_CUDA_SUCCESS = 0,
    QN_CUDA_ERROR_OUT_OF_MEMORY = 2,
    QN_CU_ATTR_SM_COUNT = 16,
    QN_CU_ATTR_L2_SIZE = 38,
    QN_CU_ATTR_CC_MAJOR = 75,
    QN_CU_ATTR_CC_MINOR = 76,
    QN_CU_ATTR_SMEM_OPTIN = 97,
    QN_CU_FUNC_ATTR_MAX_DYN_SMEM = 8,
    QN_CU_STREAM_NON_BLOCKING = 1,
    QN_CU_EVENT_DISABLE_TIMING = 2,
    QN_CU_CAPTURE_MODE_RELAXED = 2,
    QN_CU_MEMHOSTALLOC_PORTABLE = 1,
};

/* cuLaunchKernelEx's configuration, as cuda.h lays it out (CUlaunchConfig,
 * CUlaunchAttribute with its 64-byte value union). */
typedef struct {
    int id;
    char pad_[4];
    union {
        char bytes[64];
        int value;
    } val;
} qn_cu_launch_attr;
typedef struct {
    unsigned grid[3], block[3], smem;
    CUstream stream;
    qn_cu_launch_attr *attrs;
    unsigned nattrs;
} qn_cu_launch_config;
#define QN_CU_LAUNCH_ATTR_PROGRAMMATIC_STREAM_SERIALIZATION 6

typedef struct {
    CUresult (*cuInit)(unsigned);
    CUresult (*cuDriverGetVersion)(int *);
    CUresult (*cuGetErrorName)(CUresult, const char **);
    CUresult (*cuGetErrorString)(CUresult, const char **);
    CUresult (*cuDeviceGetCount)(int *);
    CUresult (*cuDeviceGet)(CUdevice *, int);
    CUresult (*cuDeviceGetName)(char *, int, CUdevice);
    CUresult (*cuDeviceTotalMem)(size_t *, CUdevice);
    CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*cuDevicePrimaryCtxRelease)(CUdevice);
    CUresult (*cuCtxSetCurrent)(CUcontext);
    CUresult (*cuCtxSynchronize)(void);
    CUresult (*cuMemGetInfo)(size_t *, size_t *);
    CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
    CUresult (*cuMemFree)(CUdeviceptr);
    CUresult (*cuMemHostAlloc)(void **, size_t, unsigned);
    CUresult (*cuMemFreeHost)(void *);
    CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
    CUresult (*cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
    CUresult (*cuStreamCreate)(CUstream *, unsigned);
    CUresult (*cuStreamDestroy)(CUstream);
    CUresult (*cuStreamSynchronize)(CUstream);
    CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned);
    CUresult (*cuStreamBeginCapture)(CUstream, int);
    CUresult (*cuStreamEndCapture)(CUstream, CUgraph *);
    CUresult (*cuEventCreate)(CUevent *, unsigned);
    CUresult (*cuEventDestroy)(CUevent);
    CUresult (*cuEventRecord)(CUevent, CUstream);
    CUresult (*cuEventSynchronize)(CUevent);
    CUresult (*cuEventElapsedTime)(float *, CUevent, CUevent);
    CUresult (*cuModuleLoadData)(CUmodule *, const void *);
    CUresult (*cuModuleUnload)(CUmodule);
    CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
    CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                               unsigned, unsigned, CUstream, void **, void **);
    /* NULL on drivers before CUDA 12 */
    CUresult (*cuLaunchKernelEx)(const qn_cu_launch_config *, CUfunction, void **, void **);
    CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec *, CUgraph, unsigned long long);
    CUresult (*cuGraphLaunch)(CUgraphExec, CUstream);
    CUresult (*cuGraphExecDestroy)(CUgraphExec);
    CUresult (*cuGraphDestroy)(CUgraph);
    CUresult (*cuGraphGetNodes)(CUgraph, void *, size_t *);
} qn_cuda_api;

typedef int nvrtcResult;
typedef struct _nvrtcProgram *nvrtcProgram;

typedef struct {
    const char *(*nvrtcGetErrorString)(nvrtcResult);
    nvrtcResult (*nvrtcVersion)(int *, int *);
    nvrtcResult (*nvrtcGetNumSupportedArchs)(int *);
    nvrtcResult (*nvrtcGetSupportedArchs)(int *);
    nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram *, const char *, const char *, int,
                                      const char *const *, const char *const *);
    nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram *);
    nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int, const char *const *);
    nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t *);
    nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char *);
    nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram, size_t *);
    nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram, char *);
    nvrtcResult (*nvrtcGetPTXSize)(nvrtcProgram, size_t *);
    nvrtcResult (*nvrtcGetPTX)(nvrtcProgram, char *);
} qn_nvrtc_api;

/* The driver API after cuInit, or NULL with the reason in qn_last_error(). */
const qn_cuda_api *qn_cuda_api_get(void);
/* NVRTC, or NULL with the reason in qn_last_error(). QUANTA_NVRTC names the
 * library file explicitly. */
const qn_nvrtc_api *qn_nvrtc_api_get(void);

/* Turn a failed driver call into a qn_status with the driver's error name:
 * "who: what failed: CUDA_ERROR_X (description)". Out-of-memory maps to
 * QN_ERR_OUT_OF_MEMORY, everything else to QN_ERR_DEVICE. */
qn_status qn_cuda_fail(CUresult r, const char *who, const char *what);

/* Evaluate a driver call; on failure return qn_cuda_fail from the caller. */
#define QN_CU(call, who)                                  \
    do {                                                  \
        CUresult qn_cu_r_ = (call);                       \
        if (qn_cu_r_ != QN_CUDA_SUCCESS)                  \
            return qn_cuda_fail(qn_cu_r_, (who), #call);  \
    } while (0)

#endif
