/* quanta bench: run benchmark cases by name or family. */
#include "bench.h"
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int usage(void) {
    fprintf(stderr, "usage: quanta bench --list | --case NAME|FAMILY|all [--backend cpu|cuda] [--iters N] [--profile] [-m MODEL.gguf]\n"
                    "                    [--only TEXT]   (the quantized-product tables: rows whose name holds TEXT)\n");
    return 2;
}

int qn_cmd_bench(int argc, char **argv) {
    const char *which = NULL;
    qn_backend b = QN_BACKEND_AUTO;
    qn_bench_opts opts = {false, 0, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (int c = 0; c < qn_bench_ncases; c++)
                printf("%-28s %-10s %s\n", qn_bench_cases[c].name, qn_bench_cases[c].family, qn_bench_cases[c].what);
            return 0;
        } else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) {
            which = argv[++i];
        } else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            if (qn_cli_backend(argv[++i], &b)) return 2;
        } else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
            opts.iters = atoi(argv[++i]);
        } else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) {
            opts.model = argv[++i];
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            opts.only = argv[++i];
        } else if (strcmp(argv[i], "--profile") == 0) {
            opts.profile = true;
        } else {
            return usage();
        }
    }
    if (!which) return usage();
    int matched = 0;
    for (int c = 0; c < qn_bench_ncases; c++)
        matched += strcmp(which, "all") == 0 || strcmp(which, qn_bench_cases[c].name) == 0 ||
                   strcmp(which, qn_bench_cases[c].family) == 0;
    if (!matched) {
        fprintf(stderr, "quanta bench: no case or family '%s' (see --list)\n", which);
        return 2;
    }
    qn_device *dev;
    qn_status s = qn_device_open(b, 0, &dev);
    if (s != QN_OK) return qn_cli_fail("opening the device", s);
    qn_device_info info;
    qn_device_info_get(dev, &info);
    printf("device: %s (%s)\n", info.name, qn_backend_name(info.backend));
    int rc = 0;
    for (int c = 0; c < qn_bench_ncases && rc == 0; c++) {
        const qn_bench_case *k = &qn_bench_cases[c];
        if (strcmp(which, "all") && strcmp(which, k->name) && strcmp(which, k->family)) continue;
        printf("\n== %s: %s\n", k->name, k->what);
        rc = k->run(dev, &opts);
    }
    qn_device_close(dev);
    return rc;
}
