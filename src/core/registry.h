/* The kernel registry: kernel source name -> embedded CUDA C text, plus the
 * specialisation defines of each registered variant (the original library's
 * function constants). A variant compiles once per architecture with NVRTC,
 * is kept in memory, and on disk under a key that hashes the sources, the
 * defines, the architecture and the NVRTC version.
 *
 * Only registered variants can be launched: that is what lets
 * qn_kernels_precompile and the test that compiles every variant cover
 * everything the ops can ask for. */
#ifndef QN_CORE_REGISTRY_H
#define QN_CORE_REGISTRY_H

#include "quanta.h"

/* A file embedded at build time from src/cuda/kernels (and numeric.h). */
typedef struct {
    const char *name;
    const char *text;
} qn_embedded_file;
extern const qn_embedded_file qn_kernel_files[];
extern const size_t qn_kernel_files_count;

typedef struct {
    const char *source;  /* file name in src/cuda/kernels, "copy.cu" */
    const char *defines; /* space-separated -D options, "" for none   */
} qn_kernel_variant;
extern const qn_kernel_variant qn_kernel_variants[]; /* src/cuda/variants.c */
extern const size_t qn_kernel_variants_count;

/* Index of the registered variant, or QN_ERR_INVALID_ARGUMENT. */
qn_status qn_registry_find(const char *source, const char *defines, size_t *index);
/* Whether every kernel of the variant's source opens with QN_GRID_WAIT()
 * (as many of those as of __global__ in its text), so it may be launched
 * while the kernel before it is still finishing (programmatic dependent
 * launch). A source that misses one anywhere is launched the plain way. */
bool qn_registry_grid_waits(size_t index);

/* A compiled image of variant `index` for `arch` ("sm_90a"): a cubin, or PTX
 * text (*is_ptx) when this NVRTC cannot target the architecture itself. The
 * image stays valid for the life of the process. */
qn_status qn_registry_image(size_t index, const char *arch, const void **image, size_t *size,
                            bool *is_ptx);

/* Compile arbitrary CUDA C (with the embedded headers available) for `arch`.
 * The caller frees *image. A compile failure returns QN_ERR_COMPILE with the
 * NVRTC log in the message. Used by the registry and by tests. */
qn_status qn_registry_compile(const char *name, const char *text, const char *defines,
                              const char *arch, void **image, size_t *size, bool *is_ptx);

/* Compile every registered variant for `arch`, several at once (one thread
 * a core, up to 16); `progress` as for qn_kernels_precompile. */
qn_status qn_registry_compile_all(const char *arch, qn_progress_fn progress, void *user);

/* The cache directory in use ("" when none could be made). */
const char *qn_registry_cache_dir(void);

#endif
