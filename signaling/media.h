/* media.h - the main process's side of the media workers: spawning and
 * supervising consultd-media processes, routing offers to them, turning
 * their reports into domain events, and the WHIP/WHEP endpoints.
 *
 * signaling/ never includes GStreamer: everything media goes through
 * media/proto.h messages to a worker process.
 */
#pragma once

#include "http.h"

typedef struct SigMedia SigMedia;

/* Starts cfg->media_workers workers (0: media disabled). */
SigMedia *sig_media_new(SigApp *app);
void sig_media_free(SigMedia *m); /* NULL-safe; stops the workers */

/* Readiness (for /readyz) and gauges (for /metrics). */
gboolean sig_media_ready(SigApp *app, char **why);
void sig_media_metrics(SigApp *app, GString *out);

/* The consultd-media executable (also used for repairs). */
const char *sig_media_worker_bin(SigApp *app);

/* Consultation ID closed: its media (and its sessions) go. */
void sig_media_end(SigApp *app, gint64 consultation);
/* Handles DATA as one packet from a media worker (the worker-channel fuzz
 * target feeds it this way; a real worker's packets come through
 * media_chan). */
void sig_media_feed(SigApp *app, const void *data, gsize len);

void sig_h_whip_post(SigReq *r);
void sig_h_whep_post(SigReq *r);
void sig_h_whip_options(SigReq *r);
void sig_h_media_session_patch(SigReq *r);
void sig_h_media_session_delete(SigReq *r);
void sig_h_media_worker_pids(SigReq *r);
