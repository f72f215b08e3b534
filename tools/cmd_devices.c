/* quanta devices: the backends and GPUs this machine offers. */
#include "cli.h"

#include <string.h>

static void print_device(qn_backend b, int index) {
    qn_device *dev;
    qn_status s = qn_device_open(b, index, &dev);
    if (s != QN_OK) {
        printf("  %s:%d  unavailable: %s\n", qn_backend_name(b), index, qn_last_error());
        return;
    }
    qn_device_info info;
    if (qn_device_info_get(dev, &info) == QN_OK) {
        if (b == QN_BACKEND_CUDA)
            printf("  cuda:%d  %s, %.1f GiB (%.1f free), compute capability %d.%d, %d SMs, L2 %d MiB, kernels for %s\n",
                   index, info.name, info.total_memory / 1073741824.0, info.free_memory / 1073741824.0,
                   info.cc_major, info.cc_minor, info.sm_count, info.l2_bytes >> 20, info.arch);
        else
            printf("  cpu:0   %s, %.1f GiB memory\n", info.name, info.total_memory / 1073741824.0);
    }
    qn_device_close(dev);
}

int qn_cmd_devices(int argc, char **argv) {
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: quanta devices\n");
        return 2;
    }
    printf("quanta %s\n", qn_version());
    printf("cpu backend:\n");
    print_device(QN_BACKEND_CPU, 0);
    int n = 0;
    qn_status s = qn_device_count(QN_BACKEND_CUDA, &n);
    printf("cuda backend:\n");
    if (s != QN_OK) {
        printf("  unavailable: %s\n", qn_last_error());
    } else if (n == 0) {
        qn_device *dev;
        /* Opening says why there is none (no driver, cuInit failed). */
        if (qn_device_open(QN_BACKEND_CUDA, 0, &dev) == QN_OK) qn_device_close(dev);
        printf("  no GPU: %s\n", qn_last_error());
    }
    for (int i = 0; i < n; i++) print_device(QN_BACKEND_CUDA, i);
    qn_device *dev;
    if (qn_device_open(QN_BACKEND_AUTO, 0, &dev) == QN_OK) {
        printf("default: %s (QUANTA_BACKEND overrides)\n", qn_backend_name(qn_device_backend(dev)));
        qn_device_close(dev);
    } else {
        printf("default: none: %s\n", qn_last_error());
    }
    return 0;
}
