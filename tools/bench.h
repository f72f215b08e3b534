/* Benchmark cases of `quanta bench`. Each case runs on the device it is
 * given and prints its own numbers; the files in bench/ define them. */
#ifndef QN_TOOLS_BENCH_H
#define QN_TOOLS_BENCH_H

#include "quanta.h"

#include <stdbool.h>

typedef struct {
    bool profile; /* print the per-op table */
    int iters;    /* 0: the case's default */
} qn_bench_opts;

typedef struct {
    const char *name;   /* "encode-worker" */
    const char *family; /* "runtime", "matvec", ... for --case FAMILY */
    const char *what;   /* one line for --list */
    int (*run)(qn_device *dev, const qn_bench_opts *opts);
} qn_bench_case;

/* The cases, from bench/cases.c. */
extern const qn_bench_case qn_bench_cases[];
extern const int qn_bench_ncases;

#endif
