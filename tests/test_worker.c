/* The encoding worker: jobs encode on their own encoder; submit orders the
 * worker after the caller's earlier work, join orders the caller after the
 * worker's, and a job's error comes back from join. */
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define N 4099

typedef struct {
    qn_tensor dst, src;
    float s;
} scale_job;

static qn_status do_scale(qn_encoder *enc, void *arg) {
    scale_job *j = arg;
    return qn_scale(enc, j->dst, j->src, j->s);
}

static qn_status do_fail(qn_encoder *enc, void *arg) {
    (void)arg;
    qn_tensor none = {0};
    return qn_fill(enc, none, 1); /* fails: no buffer */
}

static void test_worker_ordering(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    qn_worker *w;
    QT_OK(qn_encoder_create(dev, &enc));
    QT_OK(qn_worker_create(dev, &w));
    float host[N];
    qt_fill_random_f32(host, N, -2, 2);
    qn_buffer *a, *b = qt_poisoned(dev, QN_F32, 1, (int64_t[]){N}), *c = qt_poisoned(dev, QN_F32, 1, (int64_t[]){N});
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){N}, &a));
    qn_tensor ta = qn_tensor_of(a), tb = qn_tensor_of(b), tc = qn_tensor_of(c);
    for (int round = 0; round < 20; round++) {
        QT_OK(qn_buffer_write(a, 0, host, sizeof host));
        /* main: a *= 3; worker (after main): b = a * 5; main (after join): c = b + a */
        QT_OK(qn_scale(enc, ta, ta, 3.0f));
        scale_job j = {tb, ta, 5.0f};
        QT_OK(qn_worker_submit(w, enc, do_scale, &j));
        QT_OK(qn_worker_join(w, enc));
        QT_OK(qn_add(enc, tc, tb, ta));
        QT_OK(qn_encoder_commit_wait(enc));
        float got[N];
        QT_OK(qn_buffer_read(c, 0, got, sizeof got));
        for (int i = 0; i < N; i++) {
            float a3 = host[i] * 3.0f, want = a3 * 5.0f + a3;
            if (got[i] != want) fail_msg("round %d element %d: %g, expected %g", round, i, got[i], want);
        }
    }
    qn_buffer_free(a);
    qn_buffer_free(b);
    qn_buffer_free(c);
    qn_worker_destroy(w);
    qn_encoder_destroy(enc);
}

/* Many jobs in flight while the main thread encodes its own half. */
static void test_worker_many_jobs(void **state) {
    (void)state;
    qn_device *dev = qt_device();
    qn_encoder *enc;
    qn_worker *w;
    QT_OK(qn_encoder_create(dev, &enc));
    QT_OK(qn_worker_create(dev, &w));
    enum { JOBS = 32 };
    qn_buffer *src, *out[2 * JOBS];
    float host[N];
    qt_fill_random_f32(host, N, -1, 1);
    QT_OK(qn_buffer_alloc(dev, QN_F32, 1, (int64_t[]){N}, &src));
    QT_OK(qn_buffer_write(src, 0, host, sizeof host));
    scale_job jobs[2 * JOBS];
    for (int k = 0; k < 2 * JOBS; k++) {
        out[k] = qt_poisoned(dev, QN_F32, 1, (int64_t[]){N});
        jobs[k] = (scale_job){qn_tensor_of(out[k]), qn_tensor_of(src), (float)(k + 1)};
    }
    for (int k = 0; k < JOBS; k++) QT_OK(qn_worker_submit(w, NULL, do_scale, &jobs[JOBS + k]));
    for (int k = 0; k < JOBS; k++) QT_OK(do_scale(enc, &jobs[k]));
    QT_OK(qn_worker_join(w, enc));
    QT_OK(qn_encoder_commit_wait(enc));
    for (int k = 0; k < 2 * JOBS; k++) {
        float got[N];
        QT_OK(qn_buffer_read(out[k], 0, got, sizeof got));
        for (int i = 0; i < N; i++) assert_true(got[i] == host[i] * (float)(k + 1));
        qn_buffer_free(out[k]);
    }
    qn_buffer_free(src);
    qn_worker_destroy(w);
    qn_encoder_destroy(enc);
}

static void test_worker_error(void **state) {
    (void)state;
    qn_worker *w;
    QT_OK(qn_worker_create(qt_device(), &w));
    QT_OK(qn_worker_submit(w, NULL, do_fail, NULL));
    QT_FAILS(qn_worker_join(w, NULL), QN_ERR_INVALID_ARGUMENT, "qn_fill: dst has no buffer");
    QT_OK(qn_worker_join(w, NULL)); /* reported once */
    QT_FAILS(qn_worker_submit(w, NULL, NULL, NULL), QN_ERR_INVALID_ARGUMENT, "NULL");
    qn_worker_destroy(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_ordering),
        cmocka_unit_test(test_worker_many_jobs),
        cmocka_unit_test(test_worker_error),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    qt_close_devices();
    return rc;
}
