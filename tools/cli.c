#include "cli.h"

#include <string.h>
#include <time.h>

int qn_cli_fail(const char *what, qn_status s) {
    fprintf(stderr, "quanta: %s: %s (%s)\n", what, qn_last_error(), qn_status_name(s));
    return 1;
}

int qn_cli_backend(const char *name, qn_backend *out) {
    if (strcmp(name, "cpu") == 0) *out = QN_BACKEND_CPU;
    else if (strcmp(name, "cuda") == 0) *out = QN_BACKEND_CUDA;
    else if (strcmp(name, "auto") == 0) *out = QN_BACKEND_AUTO;
    else {
        fprintf(stderr, "quanta: unknown backend '%s' (cpu, cuda or auto)\n", name);
        return 1;
    }
    return 0;
}

double qn_cli_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

void qn_cli_print_profile(qn_encoder *enc, FILE *out) {
    const qn_op_time *t;
    size_t n;
    if (qn_encoder_profile(enc, &t, &n) != QN_OK) {
        fprintf(out, "profile unavailable: %s\n", qn_last_error());
        return;
    }
    /* Group by op name, in order of first appearance. */
    const char *names[128];
    double total[128];
    size_t calls[128], k = 0;
    double all = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < k && strcmp(names[j], t[i].op) != 0) j++;
        if (j == k) {
            if (k == 128) continue;
            names[k] = t[i].op;
            total[k] = 0;
            calls[k++] = 0;
        }
        total[j] += t[i].ms;
        calls[j]++;
        all += t[i].ms;
    }
    fprintf(out, "%-24s %8s %12s %10s %7s\n", "op", "calls", "total us", "mean us", "share");
    for (size_t j = 0; j < k; j++)
        fprintf(out, "%-24s %8zu %12.1f %10.2f %6.1f%%\n", names[j], calls[j], total[j] * 1e3,
                total[j] * 1e3 / (double)calls[j], all > 0 ? 100.0 * total[j] / all : 0.0);
    fprintf(out, "%-24s %8zu %12.1f\n", "all", n, all * 1e3);
}
