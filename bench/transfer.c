/* Host <-> device copies through qn_buffer_write/read: the path every
 * weight upload takes (pinned staging in 16 MiB chunks above 1 MiB).
 * Sizes: 4 KiB (latency), 64 MiB and 1 GiB (bandwidth). Best of 5. */
#include "bench.h"
#include "cli.h"

#include <stdlib.h>
#include <string.h>

int qn_bench_transfer(qn_device *dev, const qn_bench_opts *opts) {
    const size_t sizes[3] = {4096, (size_t)64 << 20, (size_t)1 << 30};
    int reps = opts->iters > 0 ? opts->iters : 5;
    unsigned char *host = malloc(sizes[2]);
    if (!host) {
        fprintf(stderr, "quanta bench: no host memory for 1 GiB\n");
        return 1;
    }
    for (size_t i = 0; i < sizes[2]; i += 4096) memset(host + i, (int)(i >> 12), 4096);
    printf("%-12s %12s %10s %12s %10s\n", "bytes", "write us", "GB/s", "read us", "GB/s");
    for (int k = 0; k < 3; k++) {
        qn_buffer *b;
        qn_status s = qn_buffer_alloc(dev, QN_U8, 1, (int64_t[]){(int64_t)sizes[k]}, &b);
        if (s != QN_OK) {
            free(host);
            return qn_cli_fail("allocating", s);
        }
        double best_w = 1e30, best_r = 1e30;
        for (int r = 0; r < reps && s == QN_OK; r++) {
            double t0 = qn_cli_now_us();
            s = qn_buffer_write(b, 0, host, sizes[k]);
            double t1 = qn_cli_now_us();
            if (s == QN_OK) s = qn_buffer_read(b, 0, host, sizes[k]);
            double t2 = qn_cli_now_us();
            if (t1 - t0 < best_w) best_w = t1 - t0;
            if (t2 - t1 < best_r) best_r = t2 - t1;
        }
        qn_buffer_free(b);
        if (s != QN_OK) {
            free(host);
            return qn_cli_fail("copying", s);
        }
        printf("%-12zu %12.1f %10.2f %12.1f %10.2f\n", sizes[k], best_w, sizes[k] / best_w / 1e3, best_r,
               sizes[k] / best_r / 1e3);
    }
    free(host);
    return 0;
}
