/*
 * test.h - a small test runner for the core's C tests.
 *
 * Each test file defines tests with TEST(name) { ... } and ends with
 * TEST_MAIN().  Running the binary runs every test in it (or only those
 * named on the command line) and prints one line per test; it exits non-zero
 * when any check failed.  Checks report file, line and the values involved.
 *
 * MS_TEST_SCALE (an environment variable, default 1.0) scales the sizes of
 * stress tests so that sanitizer builds, which run 5-20x slower, can run
 * the same tests on fewer iterations; tests read it through test_scaled().
 */
#ifndef MS_TEST_H
#define MS_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
struct test_case { const char *name; test_fn fn; };

#define TEST_MAX 256
static struct test_case test_cases[TEST_MAX];
static int test_count;
static int test_failures;
static const char *test_current;

#define TEST(name)                                                        \
    static void test_##name(void);                                        \
    __attribute__((constructor)) static void test_register_##name(void) { \
        if (test_count < TEST_MAX)                                        \
            test_cases[test_count++] = (struct test_case){#name, test_##name}; \
    }                                                                     \
    static void test_##name(void)

#define TEST_FAIL_AT(file, line, ...)                                     \
    do {                                                                  \
        fprintf(stderr, "%s:%d: [%s] ", file, line, test_current);        \
        fprintf(stderr, __VA_ARGS__);                                     \
        fputc('\n', stderr);                                              \
        test_failures++;                                                  \
    } while (0)

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            TEST_FAIL_AT(__FILE__, __LINE__, "check failed: %s", #cond);  \
            return;                                                       \
        }                                                                 \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                \
    do {                                                                  \
        long long va_ = (long long)(a), vb_ = (long long)(b);             \
        if (va_ != vb_) {                                                 \
            TEST_FAIL_AT(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, va_, vb_); \
            return;                                                       \
        }                                                                 \
    } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                   \
    do {                                                                  \
        const char *h_ = (hay), *n_ = (needle);                           \
        if (!h_ || !strstr(h_, n_)) {                                     \
            TEST_FAIL_AT(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_); \
            return;                                                       \
        }                                                                 \
    } while (0)

static inline double test_scale(void) {
    const char *s = getenv("MS_TEST_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

/* n scaled by MS_TEST_SCALE, never below min. */
static inline long test_scaled(long n, long min) {
    long v = (long)(n * test_scale());
    return v < min ? min : v;
}

#define TEST_MAIN()                                                       \
    int main(int argc, char **argv) {                                     \
        int ran = 0;                                                      \
        setvbuf(stdout, NULL, _IOLBF, 0);                                 \
        for (int i = 0; i < test_count; i++) {                            \
            int pick = argc < 2;                                          \
            for (int j = 1; j < argc; j++)                                \
                if (strcmp(argv[j], test_cases[i].name) == 0) pick = 1;   \
            if (!pick) continue;                                          \
            int before = test_failures;                                   \
            test_current = test_cases[i].name;                            \
            test_cases[i].fn();                                           \
            printf("%s %s\n", test_failures == before ? "ok  " : "FAIL", test_cases[i].name); \
            ran++;                                                        \
        }                                                                 \
        if (ran == 0) {                                                   \
            fprintf(stderr, "no test matched\n");                         \
            return 2;                                                     \
        }                                                                 \
        return test_failures ? 1 : 0;                                     \
    }

#endif
