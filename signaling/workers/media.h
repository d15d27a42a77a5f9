/* media.h - the main process's side of the media workers: spawning and
 * supervising consultd-media processes, placing consultations on them,
 * sending them offers and candidates, and turning their reports into
 * domain events.  The WHIP/WHEP endpoints (api/whip.c) come through here.
 *
 * signaling/ never includes GStreamer: everything media goes through
 * media/proto.h messages to a worker process.  Nothing here knows HTTP:
 * an offer's caller learns its outcome through a callback.
 */
#pragma once

#include "core/app.h"

typedef struct SigMedia SigMedia;
typedef struct SigWorkerProc SigWorkerProc;

/* A WHIP/WHEP session: one participant's one direction on one worker. */
typedef struct {
    char *id; /* random, names it in its URL */
    char *etag;
    gint64 consultation;
    gint64 user;
    ConsultdRole role;
    ConsultdStream stream; /* published, or the other participant's one received */
    gboolean publish;
    char *remote_ufrag;
    GPtrArray *mids; /* mid of each m-line of the offer, in order */
    SigWorkerProc *w;
    gboolean answered;
    guint candidates; /* trickled so far (api/whip.c caps them) */
    gboolean joined;  /* publish: media has arrived (a camera's counted in present) */
} SigMediaSession;

void sig_media_session_free(SigMediaSession *s); /* NULL-safe */

/* Starts cfg->media_workers workers (0: media disabled). */
SigMedia *sig_media_new(SigApp *app);
void sig_media_free(SigMedia *m); /* NULL-safe; stops the workers */

/* Readiness (for /readyz) and gauges (for /metrics). */
gboolean sig_media_ready(SigApp *app, char **why);
/* WHIP/WHEP sessions this node holds now. */
guint sig_media_session_count(SigApp *app);
void sig_media_metrics(SigApp *app, GString *out);

/* Consultation ID closed: its media (and its sessions) go.  Called by one
 * reaction (workers/reactions.c), never by a handler. */
void sig_media_end(SigApp *app, gint64 consultation);
/* Ends the media of every consultation here: the node lost its lease, and
 * the others have moved its consultations. */
void sig_media_end_all(SigApp *app);
/* No consultation's media here, and no recording still being finalized. */
gboolean sig_media_idle(SigApp *app);
/* Handles DATA as one packet from a media worker (the worker-channel fuzz
 * target feeds it this way; a real worker's packets come through
 * media_chan). */
void sig_media_feed(SigApp *app, const void *data, gsize len);

typedef enum {
    SIG_OFFER_OK,          /* TEXT is the answer's SDP */
    SIG_OFFER_BAD,         /* the worker could not use the offer */
    SIG_OFFER_NO_CODEC,    /* no codec in common */
    SIG_OFFER_NOT_LIVE,    /* the consultation ended while the offer waited */
    SIG_OFFER_UNAVAILABLE, /* no worker, or it stopped: retry */
} SigOfferResult;

/* How an offer ended.  S is the session (registered and answered on
 * SIG_OFFER_OK; on failure it is freed after the call); TEXT is the answer
 * or why not.  Runs exactly once, possibly inside sig_media_offer(). */
typedef void (*SigOfferDone)(SigOfferResult res, const SigMediaSession *s, const char *text,
                             gpointer data);

/* Sends SDP for session S (taken; consultation, user, role, stream,
 * publish, remote_ufrag and mids filled in) to the consultation's worker,
 * waiting up to 10 s for one to be ready.  A participant's new session of
 * the same stream and direction replaces their old one. */
void sig_media_offer(SigApp *app, SigMediaSession *s, const char *sdp, SigOfferDone done,
                     gpointer data);
/* The session named ID, or NULL. */
SigMediaSession *sig_media_session_find(SigApp *app, const char *id);
/* A trickled candidate for m-line MLINE of session S. */
void sig_media_session_trickle(SigMediaSession *s, guint mline, const char *candidate);
/* The client ended session S: it goes. */
void sig_media_session_delete(SigApp *app, SigMediaSession *s);

typedef struct {
    guint index;
    gboolean ready;
    gint64 pid;
    guint consultations;
    guint offers_waiting; /* sent to it and not answered yet */
} SigWorkerInfo;
/* Every worker's state (GArray of SigWorkerInfo), for the admin API. */
GArray *sig_media_workers(SigApp *app);
