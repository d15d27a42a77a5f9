/* events.h - the read side's engine: the event dispatcher, its listeners
 * and who receives which event.
 *
 * Commands append events in their own transaction and call
 * sig_events_kick(); the dispatcher runs on an idle source, moves the
 * projections and the webhook queue forward (store_dispatch) and hands each
 * new event to every listener: the live streams (api/stream.c), the
 * reactions of the media side (workers/reactions.c), the webhook sender.
 * A reaction to a domain event lives in a listener, never in the handler
 * that made the transition.
 */
#pragma once

#include <jansson.h>

#include "core/app.h"

SigEvents *sig_events_new(SigApp *app);
void sig_events_free(SigEvents *ev); /* NULL-safe */

/* Called once per dispatched event, in seq order, on the loop. */
typedef void (*SigEventFunc)(SigApp *app, const StoreEvent *e, gpointer data);
/* Registers a listener (at start-up; there is no unregistering). */
void sig_events_listen(SigApp *app, SigEventFunc fn, gpointer data);

/* The last seq this node's listeners have been handed: where a new
 * stream's backfill ends and its live events begin. */
gint64 sig_events_followed(SigApp *app);
/* Schedules a dispatcher run on the loop (cheap; coalesces). */
void sig_events_kick(SigApp *app);
/* A counter that moves whenever state visible to readers may have changed
 * (a command ran, the read models moved): caches compare it. */
guint64 sig_events_generation(SigApp *app);

/* Applies event retention (event-retention-days) now, to the end; the
 * dispatcher also does it every minute in small batches.  Returns the rows
 * deleted. */
gint64 sig_events_prune_all(SigApp *app);

/* Whether E is a teacher's presence change (which also goes to the
 * students who favor the teacher). */
gboolean sig_event_is_presence(const StoreEvent *e);
/* Whether E goes to more students than its own: a presence change to the
 * teacher's favorers, a line change to the students in the line. */
gboolean sig_event_reaches_others(const StoreEvent *e);
/* Those students (gint64), looked up now; empty for other events. */
GArray *sig_event_others(SigApp *app, const StoreEvent *e);
/* Whether event E concerns user U (OTHERS: sig_event_others(), or NULL to
 * look them up). */
gboolean sig_event_for_user(SigApp *app, const StoreEvent *e, const StoreUser *u, GArray *others);
/* The event as clients see it (SSE data, webhook body); new reference. */
json_t *sig_event_json(const StoreEvent *e);
