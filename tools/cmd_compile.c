/* quanta compile: build every kernel variant for the device now, so the
 * first real run does not wait for NVRTC. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void progress(size_t done, size_t total, const char *name, void *user) {
    double t0 = *(double *)user;
    fprintf(stderr, "\rcompiling kernels: %zu/%zu %-24s %6.1f s", done, total, name,
            (qn_cli_now_us() - t0) / 1e6);
    if (done == total) fputc('\n', stderr);
}

int qn_cmd_compile(int argc, char **argv) {
    qn_backend b = QN_BACKEND_AUTO;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            if (qn_cli_backend(argv[++i], &b)) return 2;
        } else {
            fprintf(stderr, "usage: quanta compile [--backend cuda]\n");
            return 2;
        }
    }
    qn_device *dev;
    qn_status s = qn_device_open(b, 0, &dev);
    if (s != QN_OK) return qn_cli_fail("opening the device", s);
    if (qn_device_backend(dev) != QN_BACKEND_CUDA) {
        printf("the %s backend compiles no kernels\n", qn_backend_name(qn_device_backend(dev)));
        qn_device_close(dev);
        return 0;
    }
    double t0 = qn_cli_now_us();
    s = qn_kernels_precompile(dev, progress, &t0);
    qn_device_close(dev);
    if (s != QN_OK) return qn_cli_fail("compiling kernels", s);
    printf("%zu kernel variants ready in %.2f s\n", qn_kernels_count(), (qn_cli_now_us() - t0) / 1e6);
    return 0;
}
