/* uploads.h - the recording store on the main process's side
 * (recordings-store; docs/recording.md, "The recording store").
 *
 * With a store (dir:/path or s3://bucket/prefix), a recording finalized on
 * this node's disk becomes `uploading` instead of `ready`; a queue here
 * uploads it with `consultd-objects put` (recorder/objects.h), one at a
 * time, and only once the store has it, checked, does it become `ready`
 * (with the store's URL on its row) and leave the local disk.  An upload
 * that fails keeps the file and the state, notes why on the row, and is
 * tried again with a backoff doubling up to upload-retry-max; one a crash
 * interrupted starts again at the next start (its multipart upload, whose
 * id the row keeps, aborted first).  The children get the store's
 * secrets in their environment and die with this process.
 */
#pragma once

#include "core/app.h"

SigUploads *sig_uploads_new(SigApp *app);
void sig_uploads_free(SigUploads *u); /* NULL-safe */

/* Whether recordings go to a store (recordings-store is not local). */
gboolean sig_uploads_enabled(SigApp *app);
/* Queues FILE of CONSULTATION, finalized on this disk and `uploading`;
 * ABORT_ID: a multipart upload an earlier run left (or NULL). */
void sig_uploads_queue(SigApp *app, gint64 consultation, const char *file, const char *abort_id);
/* At start-up: every `uploading` recording whose file is on this disk. */
void sig_uploads_resume(SigApp *app);
/* Nothing uploading or queued. */
gboolean sig_uploads_idle(SigApp *app);
/* CONSULTATION's combined file is made (or will not be): the local copies
 * of its recordings already in the store go. */
void sig_uploads_drop_local(SigApp *app, gint64 consultation);

/* Deletes recording R's stored copy (retention) through a child; DONE gets
 * whether it is gone, on the loop, later. */
typedef void (*SigUploadsDone)(SigApp *app, gint64 recording, gboolean ok, gpointer data);
void sig_uploads_delete(SigApp *app, const StoreRecording *r, SigUploadsDone done, gpointer data);

/* For stored recordings (StoreRecording.store, WHERE): the path of FILE in
 * a dir: store (else NULL); a presigned URL of it in an s3:// store, valid
 * recordings-url-ttl seconds (else NULL); and a child writing its bytes
 * FROM..TO to its stdout (proxy mode). */
char *sig_uploads_dir_path(const char *where, gint64 consultation, const char *file);
char *sig_uploads_presign(SigApp *app, const char *where, gint64 consultation, const char *file);
GSubprocess *sig_uploads_fetch(SigApp *app, const char *where, gint64 consultation,
                               const char *file, gint64 from, gint64 to, GError **error);
/* The origin (scheme://host[:port]) replays are redirected to, for the
 * pages' Content-Security-Policy; NULL when they are not. */
char *sig_uploads_media_origin(SigApp *app);
/* Whether replays of WHERE are redirected (else streamed through here). */
gboolean sig_uploads_redirects(SigApp *app, const char *where);
