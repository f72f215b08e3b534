/* The kernel registry: every registered variant compiles with NVRTC for
 * sm_80 and sm_90a (no GPU needed), a compile failure carries the NVRTC log,
 * defines reach the compiler, images are cached in memory and on disk, and
 * (on a GPU) a failing driver call reports the driver's error name. */
#include "util.h"

#include "core/registry.h"
#include "cuda/cuda.h"
#include "cuda/kernels/tensor.h"
#include "cuda/loader.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* NVRTC is part of the CUDA toolkit. CI has it and sets QUANTA_REQUIRE_NVRTC,
 * so there a missing NVRTC fails; elsewhere these tests are skipped. */
static bool have_nvrtc(void) {
    if (qn_nvrtc_api_get()) return true;
    const char *req = getenv("QUANTA_REQUIRE_NVRTC");
    if (req && *req && strcmp(req, "0") != 0) fail_msg("NVRTC required but unavailable: %s", qn_last_error());
    return false;
}

static void test_compile_every_variant(void **state) {
    (void)state;
    if (!have_nvrtc()) skip();
    const char *archs[2] = {"sm_80", "sm_90a"};
    assert_true(qn_kernel_variants_count > 0);
    assert_int_equal(qn_kernels_count(), qn_kernel_variants_count);
    for (int a = 0; a < 2; a++) {
        QT_OK(qn_registry_compile_all(archs[a], NULL, NULL));
        for (size_t i = 0; i < qn_kernel_variants_count; i++) {
            const void *image;
            size_t size;
            bool is_ptx;
            QT_OK(qn_registry_image(i, archs[a], &image, &size, &is_ptx)); /* now from memory */
            assert_false(is_ptx);
            assert_true(size > 16);
            assert_memory_equal(image, "\177ELF", 4); /* a cubin is an ELF file */
            const void *again;
            QT_OK(qn_registry_image(i, archs[a], &again, &size, &is_ptx));
            assert_ptr_equal(image, again);
        }
    }
}

static void test_compile_error_carries_log(void **state) {
    (void)state;
    if (!have_nvrtc()) skip();
    void *image;
    size_t size;
    bool is_ptx;
    const char *bad = "extern \"C\" __global__ void k(float *x) { x[0] = undefined_name; }\n";
    QT_FAILS(qn_registry_compile("bad.cu", bad, "", "sm_90a", &image, &size, &is_ptx), QN_ERR_COMPILE,
             "undefined_name");
    QT_FAILS(qn_registry_compile("bad.cu", bad, "", "sm_90a", &image, &size, &is_ptx), QN_ERR_COMPILE,
             "NVRTC_ERROR_COMPILATION");
    QT_FAILS(qn_registry_compile("x.cu", "", "", "gfx90a", &image, &size, &is_ptx), QN_ERR_INVALID_ARGUMENT,
             "gfx90a");
    /* a failing NVRTC call (not a source error) is a device error with its name */
    QT_FAILS(qn_registry_compile("x.cu", "", "--no-such-option", "sm_90a", &image, &size, &is_ptx), QN_ERR_DEVICE,
             "NVRTC_ERROR_INVALID_OPTION");
}

/* Several threads asking for the same variant at once (an architecture no
 * other test uses, so it really compiles) get one image. */
static void *fetch_first(void *arg) {
    const void **image = arg;
    size_t size;
    bool is_ptx;
    if (qn_registry_image(0, "sm_75", image, &size, &is_ptx) != QN_OK) *image = NULL;
    return NULL;
}

static void test_registry_threads(void **state) {
    (void)state;
    if (!have_nvrtc()) skip();
    pthread_t t[4];
    const void *images[4];
    for (int k = 0; k < 4; k++) assert_int_equal(pthread_create(&t[k], NULL, fetch_first, &images[k]), 0);
    for (int k = 0; k < 4; k++) pthread_join(t[k], NULL);
    assert_non_null(images[0]);
    for (int k = 1; k < 4; k++) assert_ptr_equal(images[k], images[0]);
}

/* A specialisation define reaches the compiler and the embedded headers are
 * visible to it. */
static void test_defines_and_headers(void **state) {
    (void)state;
    if (!have_nvrtc()) skip();
    const char *src = "#include \"tensor.h\"\n"
                      "#if QN_TEST_WIDTH != 48\n#error wrong width\n#endif\n"
                      "extern \"C\" __global__ void k(qn_kt t) { qn_store_f32(qn_kt_at(&t, 0, 0, 0, 0), t.dtype, "
                      "QN_TEST_WIDTH); }\n";
    void *image = NULL;
    size_t size;
    bool is_ptx;
    QT_OK(qn_registry_compile("t.cu", src, "-DQN_TEST_WIDTH=48 -DUNUSED=1", "sm_80", &image, &size, &is_ptx));
    free(image);
    QT_FAILS(qn_registry_compile("t.cu", src, "-DQN_TEST_WIDTH=47", "sm_80", &image, &size, &is_ptx), QN_ERR_COMPILE,
             "wrong width");
}

/* Compiled images land in the disk cache (the tests point QUANTA_CACHE_DIR
 * at the build folder). */
static void test_disk_cache(void **state) {
    (void)state;
    if (!have_nvrtc()) skip();
    const char *dir = qn_registry_cache_dir();
    assert_true(dir[0] != 0);
    const char *want = getenv("QUANTA_CACHE_DIR");
    if (want) assert_true(strncmp(dir, want, strlen(want)) == 0);
    const void *image;
    size_t size;
    bool is_ptx;
    QT_OK(qn_registry_image(0, "sm_80", &image, &size, &is_ptx));
    DIR *d = opendir(dir);
    assert_non_null(d);
    int cubins = 0;
    for (struct dirent *e; (e = readdir(d));) cubins += strstr(e->d_name, ".cubin") != NULL;
    closedir(d);
    assert_true(cubins >= 1);
}

static void test_registry_lookup(void **state) {
    (void)state;
    size_t idx;
    QT_OK(qn_registry_find("copy.cu", "", &idx));
    QT_OK(qn_registry_find("quant.cu", "-DQN_BLOCK=q6_K", &idx));
    QT_FAILS(qn_registry_find("copy.cu", "-DNOPE", &idx), QN_ERR_INVALID_ARGUMENT, "not registered");
    QT_FAILS(qn_registry_find("missing.cu", "", &idx), QN_ERR_INVALID_ARGUMENT, "missing.cu");
    /* every registered source is embedded */
    for (size_t i = 0; i < qn_kernel_variants_count; i++) {
        bool found = false;
        for (size_t f = 0; f < qn_kernel_files_count; f++)
            found |= strcmp(qn_kernel_files[f].name, qn_kernel_variants[i].source) == 0;
        assert_true(found);
    }
    /* precompiling on the CPU backend has nothing to do */
    QT_OK(qn_kernels_precompile(qt_cpu(), NULL, NULL));
}

/* On a GPU: a driver call that fails reports the driver's error name, an
 * unregistered variant is refused, and precompiling works. */
static void test_device_errors(void **state) {
    (void)state;
    if (!qt_on_gpu()) skip();
    qn_encoder *enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    void *args[1] = {NULL};
    qn_dim3 one = {1, 1, 1};
    QT_FAILS(qn_cuda_launch(enc, "test", "copy.cu", "", "no_such_function", one, one, 0, args), QN_ERR_DEVICE,
             "CUDA_ERROR_NOT_FOUND");
    QT_FAILS(qn_cuda_launch(enc, "test", "copy.cu", "-DX", "fill", one, one, 0, args), QN_ERR_INVALID_ARGUMENT,
             "not registered");
    qn_dim3 too_big = {1025, 1, 1};
    qn_buffer *b = qt_poisoned(qt_device(), QN_F32, 1, (int64_t[]){4});
    qn_kt kt = {0};
    float v = 1;
    void *fill_args[2] = {&kt, &v};
    QT_FAILS(qn_cuda_launch(enc, "test", "copy.cu", "", "fill", one, too_big, 0, fill_args), QN_ERR_DEVICE,
             "CUDA_ERROR_INVALID_VALUE");
    QT_OK(qn_kernels_precompile(qt_device(), NULL, NULL));
    qn_buffer_free(b);
    qn_encoder_destroy(enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_every_variant), cmocka_unit_test(test_compile_error_carries_log),
        cmocka_unit_test(test_defines_and_headers),   cmocka_unit_test(test_disk_cache),
        cmocka_unit_test(test_registry_lookup),       cmocka_unit_test(test_registry_threads),
        cmocka_unit_test(test_device_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
