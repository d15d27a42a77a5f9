/* fiber.c - fibers over ucontext, woken by GLib sources.
 *
 * Design notes
 * - A fiber's stack is an anonymous mapping with a guard page below it, so
 *   an overflow faults instead of writing over the heap.  Stacks of ended
 *   fibers are kept (up to STACK_CACHE) for the next ones: a request on
 *   PostgreSQL starts one.
 * - There is no scheduler: whoever wakes a fiber switches into it and gets
 *   control back when it sleeps or ends.  The loop's stack is the only
 *   place a fiber is switched into from; a wake from inside another fiber
 *   goes through an idle source.
 * - AddressSanitizer is told about each switch, or it would take the other
 *   stack for an overflow of this one.
 */
#include "fiber.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define FIBER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FIBER_ASAN 1
#endif
#endif
#ifdef FIBER_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#define STACK_SIZE (256 * 1024)
#define STACK_CACHE 64 /* above the requests a node has waiting at once, usually */

typedef struct {
    GDestroyNotify fn;
    gpointer data;
} AtExit;

struct Fiber {
    ucontext_t ctx, caller;
    char *map; /* guard page, then the stack */
    FiberFunc fn;
    gpointer data;
    GDestroyNotify done;
    GSList *exits; /* AtExit *, last registered first */
    gboolean asleep, ended;
    gboolean *ended_out; /* fiber_run()'s answer, while it runs */
    guint wake_idle;
#ifdef FIBER_ASAN
    void *fake;
    const void *caller_bottom;
    size_t caller_size;
#endif
};

static Fiber *current;
static Fiber *starting; /* handed to trampoline(): makecontext passes ints only */
static GPtrArray *stacks;
static guint n_fibers;

static size_t
page_size(void)
{
    static size_t page;
    if (!page)
        page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

static char *
stack_get(void)
{
    if (stacks && stacks->len)
        return g_ptr_array_steal_index_fast(stacks, stacks->len - 1);
    size_t len = page_size() + STACK_SIZE;
    char *map =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        g_error("fiber: cannot map a stack: %s", g_strerror(errno));
    if (mprotect(map, page_size(), PROT_NONE) != 0)
        g_error("fiber: cannot protect the guard page: %s", g_strerror(errno));
    return map;
}

static void
stack_put(char *map)
{
    if (!stacks)
        stacks = g_ptr_array_new();
    if (stacks->len < STACK_CACHE)
        g_ptr_array_add(stacks, map);
    else
        munmap(map, page_size() + STACK_SIZE);
}

/* From inside F back to its waker. */
static void
switch_out(Fiber *f)
{
#ifdef FIBER_ASAN
    __sanitizer_start_switch_fiber(f->ended ? NULL : &f->fake, f->caller_bottom, f->caller_size);
#endif
    swapcontext(&f->ctx, &f->caller);
#ifdef FIBER_ASAN
    __sanitizer_finish_switch_fiber(f->fake, &f->caller_bottom, &f->caller_size);
#endif
}

static void
trampoline(void)
{
    Fiber *f = starting;
    starting = NULL;
#ifdef FIBER_ASAN
    __sanitizer_finish_switch_fiber(NULL, &f->caller_bottom, &f->caller_size);
#endif
    f->fn(f->data);
    while (f->exits) {
        AtExit *e = f->exits->data;
        f->exits = g_slist_delete_link(f->exits, f->exits);
        e->fn(e->data);
        g_free(e);
    }
    f->ended = TRUE;
    switch_out(f); /* does not return */
}

/* Ends F's life on the loop's stack, after its last switch out. */
static void
finish(Fiber *f)
{
    if (f->ended_out)
        *f->ended_out = TRUE;
    if (f->done)
        f->done(f->data);
    g_clear_handle_id(&f->wake_idle, g_source_remove);
    stack_put(f->map);
    n_fibers--;
    g_free(f);
}

/* From the loop's stack into F, until it sleeps or ends. */
static void
switch_in(Fiber *f)
{
    g_assert(!current);
    current = f;
#ifdef FIBER_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, f->map + page_size(), STACK_SIZE);
#endif
    swapcontext(&f->caller, &f->ctx);
#ifdef FIBER_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    current = NULL;
    if (f->ended)
        finish(f);
}

gboolean
fiber_run(FiberFunc fn, gpointer data, GDestroyNotify done)
{
    if (current) {
        /* Inside a fiber already (loop code reached from one): FN runs at
         * once, on this fiber, and its waits are this fiber's. */
        fn(data);
        if (done)
            done(data);
        return TRUE;
    }
    Fiber *f = g_new0(Fiber, 1);
    f->fn = fn;
    f->data = data;
    f->done = done;
    f->map = stack_get();
    if (getcontext(&f->ctx) != 0)
        g_error("fiber: getcontext: %s", g_strerror(errno));
    f->ctx.uc_stack.ss_sp = f->map + page_size();
    f->ctx.uc_stack.ss_size = STACK_SIZE;
    f->ctx.uc_link = NULL;
    makecontext(&f->ctx, trampoline, 0);
    n_fibers++;
    gboolean ended = FALSE;
    f->ended_out = &ended;
    starting = f;
    switch_in(f);
    if (!ended) /* F lives on (asleep); when it ends, nobody is asking */
        f->ended_out = NULL;
    return ended;
}

Fiber *
fiber_self(void)
{
    return current;
}

void
fiber_sleep(void)
{
    Fiber *f = current;
    g_return_if_fail(f);
    f->asleep = TRUE;
    switch_out(f);
}

static gboolean
wake_later(gpointer data)
{
    Fiber *f = data;
    f->wake_idle = 0;
    fiber_wake(f);
    return G_SOURCE_REMOVE;
}

void
fiber_wake(Fiber *f)
{
    if (!f || !f->asleep)
        return;
    if (current) {
        if (!f->wake_idle)
            f->wake_idle = g_idle_add_full(G_PRIORITY_HIGH, wake_later, f, NULL);
        return;
    }
    g_clear_handle_id(&f->wake_idle, g_source_remove);
    f->asleep = FALSE;
    switch_in(f);
}

void
fiber_at_exit(GDestroyNotify fn, gpointer data)
{
    g_return_if_fail(current);
    AtExit *e = g_new(AtExit, 1);
    e->fn = fn;
    e->data = data;
    current->exits = g_slist_prepend(current->exits, e);
}

guint
fiber_count(void)
{
    return n_fibers;
}
