/* recordings.h - recordings in the main process: state reports, crash
 * repairs, the recordings API and replay with byte ranges. */
#pragma once

#include "http.h"

/* A worker reported a recording's state (see store_recording_update). */
void sig_recording_report(SigApp *app, gint64 consultation, const char *role,
                          const char *file, const char *state, const char *reason,
                          gint64 started_at, gint64 duration_ms, gint64 size);
/* Queues a repair of every recording left in recording/processing, or only
 * of those whose consultation id is a key of ONLY (gint64 *). */
void sig_recordings_repair(SigApp *app, GHashTable *only);

/* A recording as the API shows it; new reference. */
json_t *sig_recording_json(gint64 consultation, const char *file, const char *role,
                           const char *state, gint64 duration_ms, gint64 size,
                           gint64 offset_ms);
/* Range header parsing (exposed for tests and fuzzing): 1 with [*from, *to],
 * 0 to serve everything, -1 when unsatisfiable. */
int sig_parse_range(const char *header, gint64 size, gint64 *from, gint64 *to);

/* Applies retention (retention-days, retention-max-bytes): deletes the
 * oldest ready recordings that are too old or over the quota, with a
 * recording.deleted event each.  Returns how many were deleted. */
guint sig_recordings_prune(SigApp *app);

/* Queues the combined file of CONSULTATION when it is closed and its
 * recordings are settled (compose = true); a no-op otherwise. */
void sig_recordings_compose_maybe(SigApp *app, gint64 consultation);
/* Re-queues combined files a restart interrupted. */
void sig_recordings_compose_resume(SigApp *app);
/* 0-100 while CONSULTATION is being composed, else -1. */
int sig_recordings_compose_progress(gint64 consultation);

void sig_h_recordings_list(SigReq *r);
void sig_h_retention_run(SigReq *r);
void sig_h_admin_recordings(SigReq *r);
void sig_h_recording_file(SigReq *r);
