/* Unit tests for common/fiber.c: switching, sleeping and waking, exit
 * hooks, and stacks that come back for the next fibers. */
#include <glib.h>

#include "fiber.h"

typedef struct {
    GString *log;
    Fiber *self;
    int sleeps;
    gboolean done;
} Rec;

static void
note(Rec *r, const char *what)
{
    g_string_append(r->log, what);
}

static void
exit_a(gpointer data)
{
    note(data, "A");
}

static void
exit_b(gpointer data)
{
    note(data, "B");
}

static void
body(gpointer data)
{
    Rec *r = data;
    r->self = fiber_self();
    g_assert_nonnull(r->self);
    fiber_at_exit(exit_a, r);
    fiber_at_exit(exit_b, r);
    note(r, "1");
    for (int i = 0; i < r->sleeps; i++) {
        fiber_sleep();
        note(r, "w");
    }
    note(r, "2");
}

static void
on_done(gpointer data)
{
    Rec *r = data;
    g_assert_null(fiber_self()); /* back on the loop's stack */
    note(r, "D");
    r->done = TRUE;
}

/* A fiber that never sleeps ends inside fiber_run(), exit hooks last
 * registered first, then DONE. */
static void
test_runs_through(void)
{
    Rec r = {.log = g_string_new(NULL)};
    g_assert_true(fiber_run(body, &r, on_done));
    g_assert_cmpstr(r.log->str, ==, "12BAD");
    g_assert_null(fiber_self());
    g_assert_cmpuint(fiber_count(), ==, 0);
    g_string_free(r.log, TRUE);
}

/* A sleeping fiber gives control back; a wake from the loop's stack runs
 * it on at once; a spurious wake (not asleep) does nothing. */
static void
test_sleep_and_wake(void)
{
    Rec r = {.log = g_string_new(NULL), .sleeps = 2};
    g_assert_false(fiber_run(body, &r, on_done));
    g_assert_cmpstr(r.log->str, ==, "1");
    g_assert_cmpuint(fiber_count(), ==, 1);
    fiber_wake(r.self);
    g_assert_cmpstr(r.log->str, ==, "1w");
    fiber_wake(r.self);
    g_assert_true(r.done);
    g_assert_cmpstr(r.log->str, ==, "1ww2BAD");
    g_assert_cmpuint(fiber_count(), ==, 0);
    g_string_free(r.log, TRUE);
}

/* A wake from inside another fiber goes through the loop. */
static void
waker(gpointer data)
{
    Rec *r = data;
    fiber_wake(r->self);
    g_assert_cmpstr(r->log->str, ==, "1"); /* not yet: later, from the loop */
}

static void
test_wake_from_a_fiber(void)
{
    Rec r = {.log = g_string_new(NULL), .sleeps = 1};
    g_assert_false(fiber_run(body, &r, on_done));
    g_assert_true(fiber_run(waker, &r, NULL));
    while (!r.done)
        g_main_context_iteration(NULL, TRUE);
    g_assert_cmpstr(r.log->str, ==, "1w2BAD");
    g_string_free(r.log, TRUE);
}

/* fiber_run() from inside a fiber runs the function at once, on the same
 * fiber (loop code that starts fibers, reached from a fiber). */
static void
inner(gpointer data)
{
    Rec *r = data;
    g_assert_true(fiber_self() == r->self);
    note(r, "i");
}

static void
outer(gpointer data)
{
    Rec *r = data;
    r->self = fiber_self();
    g_assert_true(fiber_run(inner, r, NULL));
    note(r, "o");
}

static void
test_nested_runs_inline(void)
{
    Rec r = {.log = g_string_new(NULL)};
    g_assert_true(fiber_run(outer, &r, NULL));
    g_assert_cmpstr(r.log->str, ==, "io");
    g_assert_cmpuint(fiber_count(), ==, 0);
    g_string_free(r.log, TRUE);
}

/* Many fibers asleep at once, each with its own stack and locals, woken
 * in the reverse order; later rounds run on stacks handed back. */
typedef struct {
    Fiber *f;
    int seed;
    gboolean ok;
} Deep;

static void
deep(gpointer data)
{
    Deep *d = data;
    d->f = fiber_self();
    char buf[64 * 1024]; /* a good part of the stack: overwritten if shared */
    for (gsize i = 0; i < sizeof buf; i++)
        buf[i] = (char)(d->seed + i);
    fiber_sleep();
    d->ok = TRUE;
    for (gsize i = 0; i < sizeof buf; i += 997)
        d->ok = d->ok && buf[i] == (char)(d->seed + i);
}

static void
test_many(void)
{
    enum {
        N = 40
    };
    Deep d[N];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            d[i] = (Deep){.seed = i * 7 + round};
            g_assert_false(fiber_run(deep, &d[i], NULL));
        }
        g_assert_cmpuint(fiber_count(), ==, N);
        for (int i = N - 1; i >= 0; i--)
            fiber_wake(d[i].f);
        g_assert_cmpuint(fiber_count(), ==, 0);
        for (int i = 0; i < N; i++)
            g_assert_true(d[i].ok);
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/fiber/runs-through", test_runs_through);
    g_test_add_func("/fiber/sleep-and-wake", test_sleep_and_wake);
    g_test_add_func("/fiber/wake-from-a-fiber", test_wake_from_a_fiber);
    g_test_add_func("/fiber/many", test_many);
    g_test_add_func("/fiber/nested-runs-inline", test_nested_runs_inline);
    return g_test_run();
}
