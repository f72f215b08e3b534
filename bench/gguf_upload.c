/* Loading weights: a GGUF file of 16 f16 tensors, 64 MiB each (1 GiB), is
 * written to the temporary folder, then opened and every tensor uploaded to
 * the device with qn_gguf_tensor_upload (mmap, then pinned staging). The
 * file was just written, so it is read from the page cache: this measures
 * quanta's path, not the disk. Best of 3 passes. */
#include "bench.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NT 16
#define ROW 8192
#define ROWS 4096 /* 8192 x 4096 f16 = 64 MiB */

int qn_bench_gguf_upload(qn_device *dev, const qn_bench_opts *opts) {
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/quanta-bench-%ld.gguf", tmp, (long)getpid());
    size_t bytes = (size_t)ROW * ROWS * 2;
    uint16_t *data = malloc(bytes);
    if (!data) return 1;
    for (size_t i = 0; i < bytes / 2; i++) data[i] = qn_f32_to_f16((float)(i % 1000) * 1e-3f);
    qn_gguf_writer *w = NULL;
    qn_status s = qn_gguf_writer_create(&w);
    for (int t = 0; s == QN_OK && t < NT; t++) {
        char name[32];
        snprintf(name, sizeof name, "blk.%d.weight", t);
        s = qn_gguf_writer_add_tensor(w, name, QN_F16, 2, (int64_t[]){ROW, ROWS});
    }
    if (s == QN_OK) s = qn_gguf_writer_begin(w, path);
    for (int t = 0; s == QN_OK && t < NT; t++) s = qn_gguf_writer_write_tensor(w, data, bytes);
    if (s == QN_OK) s = qn_gguf_writer_finish(w);
    qn_gguf_writer_destroy(w);
    free(data);
    if (s != QN_OK) {
        unlink(path);
        return qn_cli_fail("writing the file", s);
    }
    int passes = opts->iters > 0 ? opts->iters : 3;
    double best = 1e30;
    for (int pass = 0; s == QN_OK && pass < passes; pass++) {
        double t0 = qn_cli_now_us();
        qn_gguf *g = NULL;
        qn_buffer *bufs[NT] = {0};
        s = qn_gguf_open(path, &g);
        for (int t = 0; s == QN_OK && t < NT; t++) s = qn_gguf_tensor_upload(g, t, dev, &bufs[t]);
        double us = qn_cli_now_us() - t0;
        if (us < best) best = us;
        for (int t = 0; t < NT; t++) qn_buffer_free(bufs[t]);
        qn_gguf_close(g);
    }
    unlink(path);
    if (s != QN_OK) return qn_cli_fail("uploading", s);
    printf("%d tensors, %.0f MiB: best %.1f ms, %.2f GB/s (open + allocate + upload)\n", NT,
           NT * (double)bytes / 1048576.0, best / 1e3, NT * (double)bytes / best / 1e3);
    return 0;
}
