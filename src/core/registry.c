/* The kernel registry; see registry.h. */
#include "core/registry.h"
#include "core/error.h"
#include "cuda/loader.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Compiled images in memory: one slot per (variant, architecture). A process
 * drives one or two architectures, so a short list per variant serves. */
typedef struct image_slot {
    char arch[16];
    void *image;
    size_t size;
    bool is_ptx;
    struct image_slot *next;
} image_slot;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t compiled = PTHREAD_COND_INITIALIZER;
static image_slot **slots; /* [qn_kernel_variants_count] */

qn_status qn_registry_find(const char *source, const char *defines, size_t *index) {
    for (size_t i = 0; i < qn_kernel_variants_count; i++) {
        if (strcmp(qn_kernel_variants[i].source, source) == 0 &&
            strcmp(qn_kernel_variants[i].defines, defines) == 0) {
            *index = i;
            return QN_OK;
        }
    }
    return qn_error(QN_ERR_INVALID_ARGUMENT,
                    "kernel registry: variant %s [%s] is not registered (src/cuda/variants.c)",
                    source, defines);
}

size_t qn_kernels_count(void) { return qn_kernel_variants_count; }

static const char *embedded_text(const char *name) {
    for (size_t i = 0; i < qn_kernel_files_count; i++)
        if (strcmp(qn_kernel_files[i].name, name) == 0) return qn_kernel_files[i].text;
    return NULL;
}

/* ---- the disk cache */

/* 128-bit FNV-1a over the key material (two 64-bit lanes, different bases). */
typedef struct {
    uint64_t a, b;
} hash128;

static void hash_bytes(hash128 *h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h->a = (h->a ^ s[i]) * 0x100000001b3ULL;
        h->b = (h->b ^ s[i]) * 0x100000001b3ULL;
    }
    /* a separator, so ("ab","c") and ("a","bc") differ */
    h->a = (h->a ^ 0xff) * 0x100000001b3ULL;
    h->b = (h->b ^ 0xfe) * 0x100000001b3ULL;
}

static void hash_str(hash128 *h, const char *s) { hash_bytes(h, s, strlen(s)); }

static char cache_dir[1024];
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static int make_dirs(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

static void find_cache_dir(void) {
    const char *env = getenv("QUANTA_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char dir[900] = "";
    if (env && *env)
        snprintf(dir, sizeof dir, "%s", env);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/quanta", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/quanta", home);
    if (!dir[0]) return;
    snprintf(cache_dir, sizeof cache_dir, "%s/kernels", dir);
    /* Without a writable cache, kernels still compile; they just do not persist. */
    if (make_dirs(cache_dir) != 0 || access(cache_dir, W_OK) != 0) cache_dir[0] = 0;
}

const char *qn_registry_cache_dir(void) {
    pthread_once(&cache_once, find_cache_dir);
    return cache_dir;
}

static void cache_path(char *out, size_t n, hash128 key, bool is_ptx) {
    snprintf(out, n, "%s/%016llx%016llx.%s", qn_registry_cache_dir(), (unsigned long long)key.a,
             (unsigned long long)key.b, is_ptx ? "ptx" : "cubin");
}

static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    void *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            if (fread(buf, 1, (size_t)n, f) == (size_t)n) {
                ((char *)buf)[n] = 0; /* PTX is loaded as a C string */
                *size = (size_t)n;
            } else {
                free(buf);
                buf = NULL;
            }
        }
    }
    fclose(f);
    return buf;
}

/* Write to a temporary name and rename, so a reader never sees half a file
 * and two processes compiling the same kernel do not clash. */
static void write_file(const char *path, const void *data, size_t size) {
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    size_t w = fwrite(data, 1, size, f);
    if (fclose(f) == 0 && w == size && rename(tmp, path) == 0) return;
    unlink(tmp);
}

/* ---- NVRTC */

/* The architecture NVRTC should target and whether it must fall back to PTX:
 * a GPU newer than this NVRTC gets PTX for the newest architecture NVRTC
 * knows, which the driver then compiles. */
static qn_status pick_target(const qn_nvrtc_api *nv, const char *arch, char *opt, size_t n,
                             bool *is_ptx) {
    int want = atoi(arch + 3); /* "sm_90a" -> 90 */
    int count = 0;
    if (nv->nvrtcGetNumSupportedArchs(&count) != 0 || count <= 0 || count > 256)
        return qn_error(QN_ERR_DEVICE, "NVRTC: nvrtcGetNumSupportedArchs failed");
    int archs[256];
    if (nv->nvrtcGetSupportedArchs(archs) != 0)
        return qn_error(QN_ERR_DEVICE, "NVRTC: nvrtcGetSupportedArchs failed");
    int newest = 0;
    for (int i = 0; i < count; i++) {
        if (archs[i] == want) {
            snprintf(opt, n, "--gpu-architecture=%s", arch);
            *is_ptx = false;
            return QN_OK;
        }
        if (archs[i] > newest) newest = archs[i];
    }
    if (want < newest)
        return qn_error(QN_ERR_UNSUPPORTED, "NVRTC does not support %s (too old a GPU?)", arch);
    snprintf(opt, n, "--gpu-architecture=compute_%d", newest);
    *is_ptx = true;
    return QN_OK;
}

qn_status qn_registry_compile(const char *name, const char *text, const char *defines,
                              const char *arch, void **image, size_t *size, bool *is_ptx) {
    const qn_nvrtc_api *nv = qn_nvrtc_api_get();
    if (!nv) return QN_ERR_UNSUPPORTED;
    if (strncmp(arch, "sm_", 3) != 0 || atoi(arch + 3) < 50)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "kernel compile: bad architecture '%s'", arch);

    char target[64];
    QN_TRY(pick_target(nv, arch, target, sizeof target, is_ptx));

    /* Options: target, language, then each define as its own option. */
    char defs[1024];
    snprintf(defs, sizeof defs, "%s", defines);
    const char *opts[64];
    int nopt = 0;
    opts[nopt++] = target;
    opts[nopt++] = "-std=c++17";
    opts[nopt++] = "-default-device";
    for (char *tok = strtok(defs, " "); tok && nopt < 64; tok = strtok(NULL, " ")) opts[nopt++] = tok;

    /* Every embedded file but the source itself is offered as a header. */
    const char *hdr_text[64], *hdr_name[64];
    int nhdr = 0;
    for (size_t i = 0; i < qn_kernel_files_count && nhdr < 64; i++) {
        if (strcmp(qn_kernel_files[i].name, name) == 0) continue;
        hdr_name[nhdr] = qn_kernel_files[i].name;
        hdr_text[nhdr++] = qn_kernel_files[i].text;
    }

    nvrtcProgram prog;
    nvrtcResult r = nv->nvrtcCreateProgram(&prog, text, name, nhdr, hdr_text, hdr_name);
    if (r != 0)
        return qn_error(QN_ERR_DEVICE, "NVRTC: nvrtcCreateProgram(%s) failed: %s", name,
                        nv->nvrtcGetErrorString(r));
    r = nv->nvrtcCompileProgram(prog, nopt, opts);
    if (r != 0) {
        size_t log_size = 0;
        char log[6144] = "";
        if (nv->nvrtcGetProgramLogSize(prog, &log_size) == 0 && log_size > 0) {
            char *full = malloc(log_size);
            if (full && nv->nvrtcGetProgramLog(prog, full) == 0)
                snprintf(log, sizeof log, "%s", full);
            free(full);
        }
        nv->nvrtcDestroyProgram(&prog);
        /* NVRTC_ERROR_COMPILATION (6) is the source's fault; any other code
         * means the call itself failed (a bad option, no memory). */
        return qn_error(r == 6 ? QN_ERR_COMPILE : QN_ERR_DEVICE, "NVRTC: compiling %s [%s] for %s failed: %s\n%s",
                        name, defines, arch, nv->nvrtcGetErrorString(r), log);
    }
    size_t n = 0;
    r = *is_ptx ? nv->nvrtcGetPTXSize(prog, &n) : nv->nvrtcGetCUBINSize(prog, &n);
    char *buf = r == 0 ? malloc(n + 1) : NULL;
    if (buf) r = *is_ptx ? nv->nvrtcGetPTX(prog, buf) : nv->nvrtcGetCUBIN(prog, buf);
    nv->nvrtcDestroyProgram(&prog);
    if (!buf) return qn_error(QN_ERR_OUT_OF_MEMORY, "NVRTC: no memory for the %zu-byte image of %s", n, name);
    if (r != 0) {
        free(buf);
        return qn_error(QN_ERR_DEVICE, "NVRTC: reading the image of %s failed: %s", name,
                        nv->nvrtcGetErrorString(r));
    }
    buf[n] = 0;
    *image = buf;
    *size = n;
    return QN_OK;
}

/* The key of a variant: every embedded file (a header change must recompile
 * everything), the source name, defines, architecture, NVRTC version. */
static hash128 variant_key(const qn_kernel_variant *v, const char *arch, int nv_major, int nv_minor) {
    hash128 h = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL};
    hash_str(&h, "quanta-kernel-cache-1");
    for (size_t i = 0; i < qn_kernel_files_count; i++) {
        hash_str(&h, qn_kernel_files[i].name);
        hash_str(&h, qn_kernel_files[i].text);
    }
    char ver[64];
    snprintf(ver, sizeof ver, "%s|%s|nvrtc %d.%d", v->source, arch, nv_major, nv_minor);
    hash_str(&h, ver);
    hash_str(&h, v->defines);
    return h;
}

static size_t count_of(const char *text, const char *word) {
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, word)) != NULL; p += strlen(word)) n++;
    return n;
}

bool qn_registry_grid_waits(size_t index) {
    const char *text = index < qn_kernel_variants_count ? embedded_text(qn_kernel_variants[index].source) : NULL;
    if (!text) return false;
    const size_t kernels = count_of(text, "__global__");
    return kernels > 0 && count_of(text, "QN_GRID_WAIT();") == kernels;
}

static qn_status compile_variant(size_t index, const char *arch, image_slot *slot) {
    const qn_kernel_variant *v = &qn_kernel_variants[index];
    const qn_nvrtc_api *nv = qn_nvrtc_api_get();
    if (!nv) return QN_ERR_UNSUPPORTED;
    int major = 0, minor = 0;
    nv->nvrtcVersion(&major, &minor);
    const char *text = embedded_text(v->source);
    if (!text)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "kernel registry: source %s is not embedded", v->source);

    hash128 key = variant_key(v, arch, major, minor);
    char path[1200];
    if (qn_registry_cache_dir()[0]) {
        for (int ptx = 0; ptx < 2; ptx++) {
            cache_path(path, sizeof path, key, ptx);
            slot->image = read_file(path, &slot->size);
            if (slot->image) {
                slot->is_ptx = ptx;
                return QN_OK;
            }
        }
    }
    QN_TRY(qn_registry_compile(v->source, text, v->defines, arch, &slot->image, &slot->size,
                               &slot->is_ptx));
    if (qn_registry_cache_dir()[0]) {
        cache_path(path, sizeof path, key, slot->is_ptx);
        write_file(path, slot->image, slot->size);
    }
    return QN_OK;
}

/* Compiles run outside the lock, so different variants compile in parallel;
 * a second caller for a variant being compiled waits for that compile. A
 * failed compile leaves no slot behind: the next caller tries again and gets
 * the error itself. */
qn_status qn_registry_image(size_t index, const char *arch, const void **image, size_t *size,
                            bool *is_ptx) {
    if (index >= qn_kernel_variants_count)
        return qn_error(QN_ERR_INVALID_ARGUMENT, "kernel registry: no variant %zu", index);
    pthread_mutex_lock(&lock);
    if (!slots) slots = calloc(qn_kernel_variants_count, sizeof *slots);
    if (!slots) {
        pthread_mutex_unlock(&lock);
        return qn_error(QN_ERR_OUT_OF_MEMORY, "kernel registry: out of host memory");
    }
    for (;;) {
        image_slot *slot = slots[index];
        while (slot && strcmp(slot->arch, arch) != 0) slot = slot->next;
        if (slot && slot->image) {
            *image = slot->image;
            *size = slot->size;
            *is_ptx = slot->is_ptx;
            pthread_mutex_unlock(&lock);
            return QN_OK;
        }
        if (!slot) break;
        pthread_cond_wait(&compiled, &lock); /* another thread is compiling it */
    }
    /* Claim the variant: an empty slot tells others a compile is under way. */
    image_slot *slot = calloc(1, sizeof *slot);
    if (!slot) {
        pthread_mutex_unlock(&lock);
        return qn_error(QN_ERR_OUT_OF_MEMORY, "kernel registry: out of host memory");
    }
    snprintf(slot->arch, sizeof slot->arch, "%s", arch);
    slot->next = slots[index];
    slots[index] = slot;
    pthread_mutex_unlock(&lock);

    image_slot done = *slot;
    qn_status s = compile_variant(index, arch, &done);

    pthread_mutex_lock(&lock);
    if (s == QN_OK) {
        slot->size = done.size;
        slot->is_ptx = done.is_ptx;
        slot->image = done.image;
        *image = slot->image;
        *size = slot->size;
        *is_ptx = slot->is_ptx;
    } else {
        image_slot **link = &slots[index];
        while (*link != slot) link = &(*link)->next;
        *link = slot->next;
        free(slot);
    }
    pthread_cond_broadcast(&compiled);
    pthread_mutex_unlock(&lock);
    return s;
}

/* Precompiling runs several NVRTC compiles at once (NVRTC is thread-safe):
 * worker threads take the next variant from a shared counter. */
typedef struct {
    pthread_mutex_t mu;
    size_t next, done;
    const char *arch;
    qn_status status;
    char error[1024];
    qn_progress_fn progress;
    void *user;
} precompile_job;

static void *precompile_worker(void *arg) {
    precompile_job *job = arg;
    for (;;) {
        pthread_mutex_lock(&job->mu);
        size_t i = job->status == QN_OK ? job->next++ : qn_kernel_variants_count;
        pthread_mutex_unlock(&job->mu);
        if (i >= qn_kernel_variants_count) return NULL;
        const void *image;
        size_t size;
        bool is_ptx;
        qn_status s = qn_registry_image(i, job->arch, &image, &size, &is_ptx);
        pthread_mutex_lock(&job->mu);
        if (s != QN_OK && job->status == QN_OK) {
            job->status = s;
            snprintf(job->error, sizeof job->error, "%s", qn_last_error());
        }
        job->done++;
        if (s == QN_OK && job->progress)
            job->progress(job->done, qn_kernel_variants_count, qn_kernel_variants[i].source, job->user);
        pthread_mutex_unlock(&job->mu);
    }
}

qn_status qn_registry_compile_all(const char *arch, qn_progress_fn progress, void *user) {
    precompile_job job = {.arch = arch, .status = QN_OK, .progress = progress, .user = user};
    pthread_mutex_init(&job.mu, NULL);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cores < 1 ? 1 : cores > 16 ? 16 : (int)cores;
    pthread_t threads[16];
    int started = 0;
    while (started < n && pthread_create(&threads[started], NULL, precompile_worker, &job) == 0) started++;
    if (started == 0) precompile_worker(&job); /* no threads: compile here */
    for (int t = 0; t < started; t++) pthread_join(threads[t], NULL);
    pthread_mutex_destroy(&job.mu);
    if (job.status != QN_OK) return qn_error(job.status, "%s", job.error);
    return QN_OK;
}

qn_status qn_kernels_precompile(qn_device *dev, qn_progress_fn progress, void *user) {
    if (!dev) return qn_error(QN_ERR_INVALID_ARGUMENT, "qn_kernels_precompile: dev is NULL");
    if (qn_device_backend(dev) != QN_BACKEND_CUDA) return QN_OK;
    qn_device_info info;
    QN_TRY(qn_device_info_get(dev, &info));
    return qn_registry_compile_all(info.arch, progress, user);
}
