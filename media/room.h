/* room.h - one consultation's media: a GStreamer pipeline holding every
 * participant's webrtcbin, relaying each publisher to the other participant
 * without decoding.
 *
 * Lives in the media worker process only.  All functions are called on the
 * worker's main loop; GStreamer threads hop to it with
 * g_main_context_invoke() before touching room state.
 */
#pragma once

#include <glib.h>

#include "offer.h"
#include "recorder.h"
#include "vocab.h"

/* Everything a worker is told on its command line (the main process's
 * config table holds the defaults; the worker has none of its own). */
typedef struct {
    char **addresses;  /* local addresses for ICE (NULL: all but loopback) */
    gboolean loopback; /* also offer 127.0.0.1 (tests, single-host setups) */
    guint min_port, max_port;
    char *public_ip;         /* advertised instead of host addresses (1:1 NAT) */
    char *stun;              /* stun://host:port for server reflexive candidates */
    guint media_timeout_s;   /* no RTP this long: the participant is gone */
    guint max_kbps;          /* a publisher's video at most (b=AS, REMB) */
    char *recordings_dir;    /* NULL: do not record */
    Recorder *recorder;      /* the worker's (recorder/recorder.h) */
    guint64 record_min_free; /* bytes: below, recording is held (disk_low) */
} MediaWorkerConfig;

/* What a room reports, always on the main loop. */
typedef struct {
    void (*answer)(gpointer data, guint32 req, const char *session, const char *sdp);
    void (*error)(gpointer data, guint32 req, const char *session, const char *code,
                  const char *message);
    void (*joined)(gpointer data, gint64 consultation, ConsultdRole role, ConsultdStream stream,
                   const char *session);
    void (*left)(gpointer data, gint64 consultation, ConsultdRole role, ConsultdStream stream,
                 const char *session, const char *reason);
    /* A recording changed state (recording, processing, then ready, failed
     * or empty).  FILE is its name in the consultation's directory. */
    void (*recording)(gpointer data, gint64 consultation, ConsultdRole role, const char *file,
                      ConsultdRecState state, const char *reason, gint64 started_at,
                      gint64 duration_ms, gint64 size);
    gpointer data;
} MediaRoomHooks;

typedef struct MediaRoom MediaRoom;

MediaRoom *media_room_new(gint64 consultation, const MediaWorkerConfig *cfg,
                          const MediaRoomHooks *hooks);
/* Tears the pipeline down (to NULL, which joins its threads) and frees. */
void media_room_free(MediaRoom *room); /* NULL-safe */

/* The next recording of ROLE's STREAM is number N of its series or the
 * first free one after it (the shared table knows what other nodes recorded
 * before). */
void media_room_set_rec_next(MediaRoom *room, ConsultdRole role, ConsultdStream stream, guint n);
/* Starts session SESSION for ROLE from an SDP offer: publish STREAM (WHIP)
 * or receive the other role's STREAM (WHEP).  The answer or an error comes
 * back through the hooks with REQ.  A new publish session of a role's
 * stream replaces the previous one; so does a new receive session.  FALSE
 * (and ERROR set, code in its message prefix) if the offer is refused
 * before any work starts. */
gboolean media_room_offer(MediaRoom *room, guint32 req, const char *session, ConsultdRole role,
                          ConsultdStream stream, gboolean publish, const char *sdp, GError **error);
/* Adds a remote ICE candidate to SESSION.  FALSE if there is no session. */
gboolean media_room_trickle(MediaRoom *room, const char *session, guint mline,
                            const char *candidate);
/* Ends SESSION; FALSE if there is none. */
gboolean media_room_close_session(MediaRoom *room, const char *session);
guint media_room_session_count(MediaRoom *room);
/* WHY (static text, e.g. "disk_low"): stops every recording of ROOM with
 * that reason and starts none until called again with NULL, which records
 * the publishers still there into new files.  The call goes on either way. */
void media_room_hold_recording(MediaRoom *room, const char *why);
/* Checks liveness (called every second by the worker). */
void media_room_tick(MediaRoom *room);

/* RTP packets lost between publishers and us (webrtcbin's inbound-rtp
 * packets-lost), over every session so far; ROOMS is the worker's table of
 * MediaRoom values. */
guint64 media_packets_lost(GHashTable *rooms);
