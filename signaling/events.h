/* events.h - the read side's engine: the event dispatcher, the live
 * Server-Sent Events streams and who receives which event.
 *
 * Commands append events in their own transaction and call
 * sig_events_kick(); the dispatcher runs on an idle source, moves the
 * projections and the webhook queue forward (store_dispatch) and pushes the
 * new events to the streams of the users they concern.
 */
#pragma once

#include "http.h"

SigEvents *sig_events_new(SigApp *app);
void sig_events_free(SigEvents *ev); /* NULL-safe; streams must be closed */

/* Schedules a dispatcher run on the loop (cheap; coalesces). */
void sig_events_kick(SigApp *app);
/* A counter that moves whenever state visible to readers may have changed
 * (a command ran, the read models moved): caches compare it. */
guint64 sig_events_generation(SigApp *app);
/* Ends every stream (at shutdown) so their connections can close. */
void sig_events_close_all(SigApp *app);
guint sig_events_stream_count(SigApp *app);

/* Presence tracking by stream: a teacher was seen now (went online). */
void sig_events_teacher_seen(SigApp *app, gint64 teacher);
/* TRUE if TEACHER has no open stream and was last seen GRACE_S ago. */
gboolean sig_events_teacher_gone(SigApp *app, gint64 teacher, gint64 grace_s);

/* Whether event E concerns user U (FAVORERS: the teacher's favorers, or
 * NULL to look them up). */
gboolean sig_event_for_user(SigApp *app, const StoreEvent *e, const StoreUser *u,
                            GArray *favorers);
/* The event as clients see it (SSE data, webhook body); new reference. */
json_t *sig_event_json(const StoreEvent *e);

void sig_h_events(SigReq *r);
