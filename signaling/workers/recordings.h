/* recordings.h - recordings on the main process's side: state reports from
 * the media workers, repairs after crashes (`consultd-media --finalize`),
 * the combined file (`consultd-media --compose`), retention.  Both runs
 * report through media/proto.h messages, like the workers.  The HTTP side
 * of recordings is api/recordings.c.
 */
#pragma once

#include "core/app.h"

SigRecordings *sig_recordings_new(SigApp *app);
void sig_recordings_free(SigRecordings *rs); /* NULL-safe */

/* Where recording FILE of CONSULTATION lives (newly allocated). */
char *sig_recordings_path(SigApp *app, gint64 consultation, const char *file);

/* A worker reported a recording's state (see store_recording_update). */
void sig_recording_report(SigApp *app, gint64 consultation, ConsultdRole role, const char *file,
                          ConsultdRecState state, const char *reason, gint64 started_at,
                          gint64 duration_ms, gint64 size);
/* Queues a repair of every recording left in recording/processing, or only
 * of those whose consultation id is a key of ONLY (gint64 *). */
void sig_recordings_repair(SigApp *app, GHashTable *only);

/* Applies retention (retention-days, retention-max-bytes): deletes the
 * oldest ready recordings that are too old or over the quota, with a
 * recording.deleted event each.  Returns how many were deleted. */
guint sig_recordings_prune(SigApp *app);

/* Queues the combined file of CONSULTATION when it is closed and its
 * recordings are settled (compose = true); a no-op otherwise. */
void sig_recordings_compose_maybe(SigApp *app, gint64 consultation);
/* Re-queues combined files a restart interrupted. */
void sig_recordings_compose_resume(SigApp *app);
/* No repair or combined file running or queued. */
gboolean sig_recordings_idle(SigApp *app);
/* 0-100 while CONSULTATION is being composed, else -1. */
int sig_recordings_compose_progress(SigApp *app, gint64 consultation);
