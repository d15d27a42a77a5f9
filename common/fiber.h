/* fiber.h - stackful fibers on the main loop's thread.
 *
 * A fiber runs a function on a stack of its own until the function waits
 * (fiber_sleep); the one who started or woke it then goes on, and the
 * fiber continues where it stopped when it is woken.  Everything happens
 * on one thread: a fiber never runs at the same time as the loop, only in
 * turn with it, so the loop's state needs no locks.  What a fiber buys is
 * that a wait on the network (a PostgreSQL reply) does not hold up the
 * loop: HTTP, SSE heartbeats and media control go on meanwhile.
 *
 * Code that runs in a fiber must expect the loop's state to have moved
 * across a wait, as after any callback. */
#pragma once

#include <glib.h>

typedef struct Fiber Fiber;
typedef void (*FiberFunc)(gpointer data);

/* Runs FN(DATA) in a new fiber, now, until it returns or sleeps.  When FN
 * has returned, DONE(DATA) runs on the loop's stack (not the fiber's).
 * Returns TRUE if FN returned before this call did.  Called from inside a
 * fiber, FN and DONE run at once on that fiber (TRUE). */
gboolean fiber_run(FiberFunc fn, gpointer data, GDestroyNotify done);

/* The fiber running now, or NULL on the loop's own stack. */
Fiber *fiber_self(void);

/* Inside a fiber: gives control back until fiber_wake().  Wakes can be
 * spurious: callers sleep in a loop over their condition. */
void fiber_sleep(void);

/* Makes F run again: now, if called from the loop's stack (a GSource
 * callback), else from an idle source at high priority.  Waking a fiber
 * that is not asleep is a no-op. */
void fiber_wake(Fiber *f);

/* Inside a fiber: FN(DATA) runs when the fiber's function has returned,
 * still inside the fiber, in the reverse order of registration. */
void fiber_at_exit(GDestroyNotify fn, gpointer data);

/* Fibers started and not yet ended (for /metrics and tests). */
guint fiber_count(void);
