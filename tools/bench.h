/* Benchmark cases of `quanta bench`. Each case runs on the device it is
 * given and prints its own numbers; the files in bench/ define them. */
#ifndef QN_TOOLS_BENCH_H
#define QN_TOOLS_BENCH_H

#include "quanta.h"

#include <stdbool.h>

typedef struct {
    bool profile; /* print the per-op table */
    int iters;    /* 0: the case's default */
    const char *model; /* -m FILE for the model cases; NULL: the default model */
    const char *only;  /* --only TEXT: the rows of a table whose name holds it */
} qn_bench_opts;

typedef struct {
    const char *name;   /* "encode-worker" */
    const char *family; /* "runtime", "matvec", ... for --case FAMILY */
    const char *what;   /* one line for --list */
    int (*run)(qn_device *dev, const qn_bench_opts *opts);
} qn_bench_case;

/* Shared by the cases (bench/common.c). */
/* True (after saying so) when dev is not a GPU. */
bool qn_bench_gpu_only(qn_device *dev);
/* Device time of one call of fn: reps calls (fn gets their index, to rotate
 * buffers) captured as one graph after a warm-up; the best of five replays
 * divided by reps, a graph node's overhead included. */
typedef qn_status (*qn_bench_fn)(qn_encoder *enc, const void *arg, int i);
qn_status qn_bench_time_graph(qn_encoder *enc, qn_bench_fn fn, const void *arg, int reps, double *us);
/* One more call of fn with per-op device times, printed as a table. */
qn_status qn_bench_profile(qn_encoder *enc, qn_bench_fn fn, const void *arg);
/* The streaming-read ceiling of the device in GB/s (1 GiB, 16-byte loads). */
qn_status qn_bench_read_ceiling(qn_device *dev, qn_encoder *enc, double *gbps);

/* An encoder and the read ceiling, printed; nonzero (said on stderr) if
 * either fails. */
int qn_bench_start(qn_device *dev, qn_encoder **enc, double *ceiling);

/* The cases, from bench/cases.c. */
extern const qn_bench_case qn_bench_cases[];
extern const int qn_bench_ncases;

#endif
