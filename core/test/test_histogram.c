/*
 * test_histogram.c - the per-worker histograms of poll duration and
 * scheduling delay: where a duration lands, that they are off unless
 * asked for, and that under load from many threads every poll is counted
 * exactly once in each.
 *
 * Nothing here asserts on timing: durations depend on the machine, only
 * the counts and the bucket arithmetic are checked.
 */
#define _GNU_SOURCE
#include "ms.h"
#include "test.h"
#include "test_rt.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "metrics.h"

/* ------------------------------------------------------------------------
 * Bucketing
 * ---------------------------------------------------------------------- */

TEST(bucket_bounds_are_powers_of_two_microseconds_then_overflow) {
    CHECK_INT_EQ(ms_histogram_bound_ns(0), 1000);
    CHECK_INT_EQ(ms_histogram_bound_ns(1), 2000);
    CHECK_INT_EQ(ms_histogram_bound_ns(10), 1024000);
    CHECK_INT_EQ(ms_histogram_bound_ns(MS_HIST_BUCKETS - 2), 8388608000ll); /* ~8.4 s */
    CHECK(ms_histogram_bound_ns(MS_HIST_BUCKETS - 1) == UINT64_MAX);
    CHECK(ms_histogram_bound_ns(1000) == UINT64_MAX);
}

TEST(a_duration_lands_in_the_first_bucket_whose_bound_is_not_below_it) {
    CHECK_INT_EQ(met_hist_bucket(0), 0);
    CHECK_INT_EQ(met_hist_bucket(1), 0);
    CHECK_INT_EQ(met_hist_bucket(1000), 0);
    CHECK_INT_EQ(met_hist_bucket(1001), 1);
    CHECK_INT_EQ(met_hist_bucket(2000), 1);
    CHECK_INT_EQ(met_hist_bucket(2001), 2);
    CHECK_INT_EQ(met_hist_bucket(3000), 2);
    CHECK_INT_EQ(met_hist_bucket(4000), 2);
    CHECK_INT_EQ(met_hist_bucket(4001), 3);
    /* Every bound is inclusive, and one nanosecond more is the next bucket. */
    for (uint32_t i = 0; i + 1 < MS_HIST_BUCKETS; i++) {
        uint64_t b = ms_histogram_bound_ns(i);
        CHECK_INT_EQ(met_hist_bucket(b), i);
        CHECK_INT_EQ(met_hist_bucket(b + 1), i + 1);
    }
}

TEST(durations_past_the_last_bound_go_to_the_overflow_bucket) {
    uint64_t last = ms_histogram_bound_ns(MS_HIST_BUCKETS - 2);
    CHECK_INT_EQ(met_hist_bucket(last + 1), MS_HIST_BUCKETS - 1);
    CHECK_INT_EQ(met_hist_bucket(60ull * 1000000000u), MS_HIST_BUCKETS - 1);
    CHECK_INT_EQ(met_hist_bucket(UINT64_MAX), MS_HIST_BUCKETS - 1);
}

TEST(recording_counts_the_bucket_and_adds_to_the_sum) {
    met_hist h;
    memset(&h, 0, sizeof h);
    met_hist_record(&h, 500);
    met_hist_record(&h, 1500);
    met_hist_record(&h, 1500);
    met_hist_record(&h, 20ull * 1000000000u);
    ms_histogram out;
    met_hist_read(&h, &out);
    CHECK_INT_EQ(out.count, 4);
    CHECK_INT_EQ(out.buckets[0], 1);
    CHECK_INT_EQ(out.buckets[1], 2);
    CHECK_INT_EQ(out.buckets[MS_HIST_BUCKETS - 1], 1);
    CHECK_INT_EQ(out.sum_ns, 500 + 1500 + 1500 + 20000000000ll);
}

/* ------------------------------------------------------------------------
 * Recording in a runtime
 * ---------------------------------------------------------------------- */

static ms_runtime *start_hist(uint32_t workers, bool histograms) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = workers;
    cfg.metrics_histograms = histograms;
    return start_config(&cfg);
}

/* Yields `left` times, then is ready. */
typedef struct yielder {
    int left;
} yielder;

static ms_poll yield_poll(ms_cx *cx, void *state) {
    yielder *y = state;
    if (y->left-- > 0)
        return ms_cx_yield(cx);
    return MS_POLL_READY;
}

/* Pending until another thread sets `go` and wakes it: the wake comes
 * from outside the workers, through the injection queue. */
typedef struct sleeper {
    pthread_mutex_t lock;
    bool go;
    bool has_waker;
    ms_waker waker;
} sleeper;

static ms_poll sleeper_poll(ms_cx *cx, void *state) {
    sleeper *s = state;
    pthread_mutex_lock(&s->lock);
    bool go = s->go;
    if (!go) {
        if (s->has_waker)
            ms_waker_drop(&s->waker);
        s->waker = ms_waker_clone(ms_cx_waker(cx));
        s->has_waker = true;
    }
    pthread_mutex_unlock(&s->lock);
    return go ? MS_POLL_READY : MS_POLL_PENDING;
}

static void sleeper_release(sleeper *s) {
    pthread_mutex_lock(&s->lock);
    s->go = true;
    bool wake = s->has_waker;
    ms_waker w = s->waker;
    s->has_waker = false;
    pthread_mutex_unlock(&s->lock);
    if (wake)
        ms_waker_wake(&w); /* consumes the clone */
}

/* One spawning thread: its yielders and sleepers, spawned from outside the
 * runtime, then the sleepers woken from this thread. */
typedef struct spawner {
    ms_runtime *rt;
    int tasks;
    int yields;
    yielder *ys;
    sleeper *ss;
    ms_task **hy, **hs;
    int failures;
} spawner;

static void *spawner_main(void *arg) {
    spawner *sp = arg;
    for (int i = 0; i < sp->tasks; i++) {
        sp->ys[i] = (yielder){.left = sp->yields};
        pthread_mutex_init(&sp->ss[i].lock, NULL);
        if (ms_spawn(sp->rt, yield_poll, &sp->ys[i], NULL, &sp->hy[i]) != 0 ||
            ms_spawn(sp->rt, sleeper_poll, &sp->ss[i], NULL, &sp->hs[i]) != 0)
            sp->failures++;
    }
    for (int i = 0; i < sp->tasks; i++)
        sleeper_release(&sp->ss[i]);
    for (int i = 0; i < sp->tasks; i++) {
        if (ms_task_join(sp->hy[i], 30000, NULL, NULL) != 0 ||
            ms_task_join(sp->hs[i], 30000, NULL, NULL) != 0)
            sp->failures++;
        ms_task_release(sp->hy[i]);
        ms_task_release(sp->hs[i]);
        pthread_mutex_destroy(&sp->ss[i].lock);
    }
    return NULL;
}

TEST(histogram_counts_equal_each_workers_polls_under_load_from_many_threads) {
    enum { THREADS = 4 };
    ms_runtime *rt = start_hist(4, true);
    CHECK(rt);
    int tasks = (int)test_scaled(200, 20), yields = (int)test_scaled(50, 10);
    spawner sp[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        sp[t] = (spawner){.rt = rt, .tasks = tasks, .yields = yields};
        sp[t].ys = calloc((size_t)tasks, sizeof *sp[t].ys);
        sp[t].ss = calloc((size_t)tasks, sizeof *sp[t].ss);
        sp[t].hy = calloc((size_t)tasks, sizeof *sp[t].hy);
        sp[t].hs = calloc((size_t)tasks, sizeof *sp[t].hs);
        CHECK(sp[t].ys && sp[t].ss && sp[t].hy && sp[t].hs);
    }
    for (int t = 0; t < THREADS; t++)
        CHECK_INT_EQ(pthread_create(&th[t], NULL, spawner_main, &sp[t]), 0);
    int failures = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        failures += sp[t].failures;
        free(sp[t].ys);
        free(sp[t].ss);
        free(sp[t].hy);
        free(sp[t].hs);
    }
    CHECK_INT_EQ(failures, 0);

    /* Every task has ended and each join saw its last poll's counts (the
     * counts are written before the completion that the join acquires),
     * so the workers are quiet and the figures final. */
    ms_metrics *m = ms_metrics_snapshot(rt);
    CHECK(m);
    CHECK(m->histograms);
    uint64_t polls = 0;
    for (uint32_t w = 0; w < m->workers; w++) {
        const ms_worker_metrics *wm = &m->worker[w];
        CHECK_INT_EQ(wm->poll_duration.count, wm->poll_count);
        CHECK_INT_EQ(wm->schedule_delay.count, wm->poll_count);
        uint64_t sum = 0;
        for (uint32_t i = 0; i < MS_HIST_BUCKETS; i++)
            sum += wm->poll_duration.buckets[i];
        CHECK_INT_EQ(sum, wm->poll_duration.count);
        polls += wm->poll_count;
    }
    /* Each yielder polls yields + 1 times, each sleeper at least once. */
    CHECK(polls >= (uint64_t)THREADS * (uint64_t)tasks * (uint64_t)(yields + 2));
    CHECK_INT_EQ(polls, m->poll_count);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

/* Runs a task that polls n+1 times (yielding n) to its end, then takes a
 * snapshot (NULL on failure). */
static ms_metrics *snapshot_after_yields(ms_runtime *rt, int n) {
    yielder y = {.left = n};
    ms_task *t = NULL;
    if (ms_spawn(rt, yield_poll, &y, NULL, &t) != 0)
        return NULL;
    int rc = ms_task_join(t, 10000, NULL, NULL);
    ms_task_release(t);
    return rc == 0 ? ms_metrics_snapshot(rt) : NULL;
}

TEST(histograms_are_off_by_default_and_record_nothing) {
    ms_config cfg;
    ms_config_default(&cfg);
    CHECK(!cfg.metrics_histograms);
    ms_runtime *rt = start_hist(2, false);
    CHECK(rt);
    ms_metrics *m = snapshot_after_yields(rt, 20);
    CHECK(m);
    CHECK(!m->histograms);
    CHECK(m->poll_count >= 21);
    for (uint32_t w = 0; w < m->workers; w++) {
        CHECK_INT_EQ(m->worker[w].poll_duration.count, 0);
        CHECK_INT_EQ(m->worker[w].schedule_delay.count, 0);
    }
    char *json = ms_metrics_to_json(m, false);
    CHECK(json);
    CHECK(strstr(json, "\"histograms\":false"));
    CHECK(!strstr(json, "poll_duration"));
    ms_free(json);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

TEST(json_has_both_histograms_per_worker_when_on) {
    ms_runtime *rt = start_hist(2, true);
    CHECK(rt);
    ms_metrics *m = snapshot_after_yields(rt, 5);
    CHECK(m);
    char *json = ms_metrics_to_json(m, false);
    CHECK(json);
    cJSON *root = cJSON_Parse(json);
    ms_free(json);
    CHECK(root);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "histograms")));
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "per_worker");
    CHECK_INT_EQ(cJSON_GetArraySize(arr), m->workers);
    uint64_t total = 0;
    for (uint32_t w = 0; w < m->workers; w++) {
        const cJSON *o = cJSON_GetArrayItem(arr, (int)w);
        const char *names[] = {"poll_duration", "schedule_delay"};
        for (int k = 0; k < 2; k++) {
            const cJSON *hg = cJSON_GetObjectItemCaseSensitive(o, names[k]);
            CHECK(cJSON_IsObject(hg));
            const cJSON *le = cJSON_GetObjectItemCaseSensitive(hg, "le_ns");
            const cJSON *b = cJSON_GetObjectItemCaseSensitive(hg, "buckets");
            CHECK_INT_EQ(cJSON_GetArraySize(le), MS_HIST_BUCKETS - 1);
            CHECK_INT_EQ(cJSON_GetArraySize(b), MS_HIST_BUCKETS);
            CHECK_INT_EQ(cJSON_GetArrayItem(le, 0)->valuedouble, 1000);
            double count = 0;
            for (int i = 0; i < MS_HIST_BUCKETS; i++)
                count += cJSON_GetArrayItem(b, i)->valuedouble;
            CHECK_INT_EQ(count, cJSON_GetObjectItemCaseSensitive(hg, "count")->valuedouble);
            CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(hg, "sum_ns")));
            if (k == 0)
                total += (uint64_t)count;
        }
    }
    CHECK(total >= 6); /* the yielder's polls, at least */
    cJSON_Delete(root);
    ms_metrics_free(m);
    ms_runtime_free(rt);
}

TEST_MAIN()
