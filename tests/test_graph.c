/* Graph capture and replay: a replay equals the same ops run eagerly, and
 * values that live in device memory (a position) move between replays. */
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define D 67      /* row length, odd on purpose */
#define ROWS 9    /* rows of the "cache" */

typedef struct {
    qn_buffer *x, *y, *cache, *pos, *bias;
} step_bufs;

/* One "decode step": y = (x + bias) * 0.5, written into cache row *pos, then
 * x = y * x (so each step depends on the last). */
static void encode_step(qn_encoder *enc, step_bufs *b) {
    qn_tensor x = qn_tensor_of(b->x), y = qn_tensor_of(b->y);
    QT_OK(qn_add(enc, y, x, qn_tensor_of(b->bias)));
    QT_OK(qn_scale(enc, y, y, 0.5f));
    QT_OK(qn_set_rows(enc, qn_tensor_of(b->cache), qn_tensor_make(b->y, 0, QN_F32, D, 1, 1, 1),
                      qn_tensor_of(b->pos)));
    QT_OK(qn_mul(enc, x, y, x));
}

static void setup(qn_device *dev, step_bufs *b, const float *x0, const float *bias) {
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){D}, &b->x));
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){D}, &b->bias));
    b->y = qt_poisoned(dev, QN_F32, 1, (int64_t[]){D});
    b->cache = qt_poisoned(dev, QN_F16, 2, (int64_t[]){D, ROWS});
    QT_OK(qn_buffer_alloc(dev, QN_I32, 1, (int64_t[]){1}, &b->pos));
    QT_OK(qn_buffer_write(b->x, 0, x0, D * 4));
    QT_OK(qn_buffer_write(b->bias, 0, bias, D * 4));
}

static void teardown(step_bufs *b) {
    qn_buffer_free(b->x);
    qn_buffer_free(b->y);
    qn_buffer_free(b->cache);
    qn_buffer_free(b->pos);
    qn_buffer_free(b->bias);
}

static void test_replay_equals_eager(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    float x0[D], bias[D];
    qt_fill_random_f32(x0, D, -1.5f, 1.5f);
    qt_fill_random_f32(bias, D, -0.5f, 0.5f);
    step_bufs eager, replay;
    setup(dev, &eager, x0, bias);
    setup(dev, &replay, x0, bias);
    qn_encoder *enc;
    QT_OK(qn_encoder_create(dev, &enc));

    /* capture once; nothing runs while capturing */
    QT_OK(qn_graph_begin(enc));
    QT_FAILS(qn_graph_begin(enc), QN_ERR_INVALID_ARGUMENT, "already capturing");
    encode_step(enc, &replay);
    QT_FAILS(qn_encoder_commit(enc), QN_ERR_INVALID_ARGUMENT, "capturing");
    qn_graph *g;
    QT_OK(qn_graph_end(enc, &g));
    assert_int_equal(qn_graph_nodes(g), 4);
    uint16_t c[D * ROWS];
    QT_OK(qn_buffer_read(replay.cache, 0, c, sizeof c));
    for (int i = 0; i < D * ROWS; i++) assert_int_equal(c[i], 0xFFFF);

    /* positions move between replays (and wrap, as a ring would) */
    const int32_t positions[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 4, 8};
    for (int step = 0; step < 12; step++) {
        QT_OK(qn_buffer_write(eager.pos, 0, &positions[step], 4));
        QT_OK(qn_buffer_write(replay.pos, 0, &positions[step], 4));
        encode_step(enc, &eager);
        QT_OK(qn_encoder_commit_wait(enc));
        QT_OK(qn_graph_launch(g, enc));
        QT_OK(qn_encoder_commit_wait(enc));
        float xe[D], xr[D];
        uint16_t ce[D * ROWS], cr[D * ROWS];
        QT_OK(qn_buffer_read(eager.x, 0, xe, sizeof xe));
        QT_OK(qn_buffer_read(replay.x, 0, xr, sizeof xr));
        QT_OK(qn_buffer_read(eager.cache, 0, ce, sizeof ce));
        QT_OK(qn_buffer_read(replay.cache, 0, cr, sizeof cr));
        assert_memory_equal(xe, xr, sizeof xe);
        assert_memory_equal(ce, cr, sizeof ce);
        /* and the row at this position is this step's y */
        float y[D];
        QT_OK(qn_buffer_read(replay.y, 0, y, sizeof y));
        for (int i = 0; i < D; i++) assert_int_equal(cr[positions[step] * D + i], qn_f32_to_f16(y[i]));
    }
    qn_graph_destroy(g);
    qn_encoder_destroy(enc);
    teardown(&eager);
    teardown(&replay);
}

static void test_graph_errors(void **state) {
    (void)state;
    qn_encoder *enc, *cpu_enc;
    QT_OK(qn_encoder_create(qt_device(), &enc));
    QT_OK(qn_encoder_create(qt_cpu(), &cpu_enc));
    qn_graph *g;
    QT_FAILS(qn_graph_end(enc, &g), QN_ERR_INVALID_ARGUMENT, "not capturing");
    QT_FAILS(qn_graph_launch(NULL, enc), QN_ERR_INVALID_ARGUMENT, "NULL");
    qn_buffer *b = qt_poisoned(qt_device(), QN_F32, 1, (int64_t[]){8});
    QT_OK(qn_graph_begin(enc));
    QT_OK(qn_fill(enc, qn_tensor_of(b), 2));
    QT_OK(qn_graph_end(enc, &g));
    if (qt_device() != qt_cpu()) QT_FAILS(qn_graph_launch(g, cpu_enc), QN_ERR_INVALID_ARGUMENT, "different devices");
    QT_OK(qn_graph_begin(enc));
    QT_FAILS(qn_graph_launch(g, enc), QN_ERR_INVALID_ARGUMENT, "capturing");
    qn_graph *empty;
    QT_OK(qn_graph_end(enc, &empty));
    assert_int_equal(qn_graph_nodes(empty), 0);
    QT_OK(qn_graph_launch(g, enc));
    QT_OK(qn_encoder_commit_wait(enc));
    float x[8];
    QT_OK(qn_buffer_read(b, 0, x, sizeof x));
    for (int i = 0; i < 8; i++) assert_true(x[i] == 2.0f);
    qn_graph_destroy(g);
    qn_graph_destroy(empty);
    qn_buffer_free(b);
    qn_encoder_destroy(enc);
    qn_encoder_destroy(cpu_enc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_equals_eager),
        cmocka_unit_test(test_graph_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
