/* reactions.c - see reactions.h.
 *
 * A reaction runs once per event, in seq order, after the transaction that
 * appended the event committed.  A restart that lost one is covered at
 * start-up: a new process has no media yet, sig_recordings_repair() and
 * sig_recordings_compose_resume() redo what recordings were left doing, and
 * the dispatcher replays whatever it had not dispatched.
 */
#include "workers/reactions.h"

#include "core/events.h"
#include "workers/media.h"
#include "workers/recordings.h"

static void
on_event(SigApp *app, const StoreEvent *e, gpointer data)
{
    static const char *const closed[] = {"consultation.ended", "consultation.declined",
                                         "consultation.canceled", "consultation.expired", NULL};
    if (!e->consultation_id || !g_strv_contains(closed, e->type))
        return;
    sig_media_end(app, e->consultation_id); /* a closed consultation has no media */
    sig_recordings_compose_maybe(app, e->consultation_id);
}

void
sig_reactions_init(SigApp *app)
{
    sig_events_listen(app, on_event, NULL);
}
