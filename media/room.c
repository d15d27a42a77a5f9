/* room.c - see room.h.
 *
 * Pipeline of one consultation
 *
 *   publisher webrtcbin (source R) src pads --> tee[R][kind] (allow-not-linked)
 *        probe on the tee's sink pad ==(fan-out)==> relay pad --> subscriber webrtcbin sink
 *                      ^ payload type rewritten, extensions dropped
 *        probe on the tee's sink pad ~~> recording journal (recorder/journal.h)
 *
 * A source is a participant's camera or shared screen (each its own WHIP
 * session); a subscriber receives one source (each its own WHEP session).
 * The eight tees (four sources, video and audio) exist from the start, so
 * a publisher that (re)joins and a subscriber that joins first or later all
 * meet at a fixed point.
 *
 * Relay: a buffer probe on each tee's sink pad (the publisher's streaming
 * thread; once connected, the worker's reader thread that libnice handed
 * the packet to: rtppass.h, trim.h) copies every packet with the
 * subscriber's payload type and pushes it straight into the subscriber's
 * webrtcbin through a pad of our own (no parent, linked to the webrtcbin
 * request pad).  No appsink/appsrc pair, so no thread hop per packet: 4
 * threads fewer per consultation and a fifth fewer context switches
 * (measured; the CPU time stayed the same, docs/benchmarks.md).  What
 * webrtcbin itself puts on the path and only passes packets through goes
 * too (trim.h).
 *
 * Isolation: the push's result is only logged.  Whatever fails on the
 * sending side (not-negotiated, a flushing webrtcbin) never reaches the tee,
 * so a subscriber can never stop a publisher's ingest, nor the recorder's
 * branch (WEBRTC-NOTES: "A failing branch kills the ingest").  Nothing on
 * the path waits either, which matters all the more as a reader thread
 * carries the publishers of several consultations: a push that waited would
 * hold them all up.  So nothing is pushed before the subscriber's connection
 * is up (before DTLS completes, webrtcbin's send path holds data back):
 * until then a relay keeps the newest packets, up to RELAY_PENDING_MAX, and
 * sends them first once connected, so the keyframe requested when it was
 * attached is not lost (measured: requesting it only at connection made
 * joins about 100 ms slower).  Keyframe requests travel the other way: an
 * upstream force-key-unit event reaching the relay pad is pushed upstream
 * from the tee's sink pad, and webrtcbin turns it into a PLI to the
 * publisher.
 *
 * Threads: webrtcbin signals and promise callbacks run on GStreamer threads.
 * They only read immutable fields, touch atomics, or hop to the main loop
 * with g_main_context_invoke() holding a session reference.  Sessions and
 * rooms are reference counted (g_atomic_rc_box) for that reason; the main
 * loop is the only writer of their state.
 *
 * Teardown order of a session: remove probes' reasons (relays detached),
 * webrtcbin to NULL (joins its threads), remove from the bin, drop the ref.
 */
#include "room.h"

#include "offer.h"

#include "counters.h"
#include "recorder.h"
#include "repair.h"
#include "trim.h"

#define GST_USE_UNSTABLE_API
#include <gst/gst.h>
#include <gst/rtp/gstrtcpbuffer.h>
#include <gst/rtp/gstrtpbuffer.h>
#include <gst/sdp/sdp.h>
#include <gst/video/video.h>
#include <gst/webrtc/webrtc.h>
#include <string.h>

/* Packets lost on the way from publishers to us, as rtpsession counts them:
 * the sum over sessions that ended plus the latest reading of live ones
 * (main loop only). */

static const char *const kind_names[] = {"video", "audio"};

typedef struct Session Session;

/* A published source: a participant's camera or shared screen.  Every
 * per-publisher array of a room is indexed by it. */
#define N_SOURCES (CONSULTD_N_ROLES * CONSULTD_N_STREAMS)

static int
source_of(ConsultdRole role, ConsultdStream stream)
{
    return (int)role + CONSULTD_N_ROLES * (int)stream;
}

static ConsultdRole
source_role(int src)
{
    return (ConsultdRole)(src % CONSULTD_N_ROLES);
}

static ConsultdStream
source_stream(int src)
{
    return (ConsultdStream)(src / CONSULTD_N_ROLES);
}

/* "teacher", "student-screen": how a source is named in logs and pads. */
static const char *
source_name(int src)
{
    static const char *const names[N_SOURCES] = {"teacher", "student", "teacher-screen",
                                                 "student-screen"};
    return (guint)src < N_SOURCES ? names[src] : "unknown";
}

typedef struct {
    MediaRoom *room;
    Session *sub; /* the subscriber this relay feeds (not a ref) */
    int from;     /* the source relayed */
    int kind;
    guint8 pt;             /* the subscriber's payload type */
    GstPad *src;           /* ours, no parent, linked to the webrtcbin request pad */
    GstPad *sink_pad;      /* webrtcbin request pad */
    gboolean attached;     /* in its fan-out */
    gint connected;        /* the subscriber can take data (atomic) */
    GQueue pending;        /* packets kept until connected (under the fan-out lock) */
    gint failed;           /* a push failed (logged once; atomic) */
    MediaTrimResult trim;  /* of the send path (under the fan-out lock) */
    MediaHistory *history; /* video: what was sent, for NACKs (under the fan-out lock) */
    guint ast_id;          /* video: abs-send-time's id in the subscriber's offer, or 0 */
} Relay;

#define RELAY_PENDING_MAX 128

/* One publisher track's relays.  RELAYS is read by the probe on the
 * publisher's streaming thread and changed on the main loop, under LOCK. */
typedef struct {
    GMutex lock;
    GPtrArray *relays;        /* Relay *, attached ones */
    GstPad *tee_sink;         /* a ref; keyframe requests go upstream from here */
    gint64 keyframe_asked_us; /* monotonic, of the last request sent (atomic) */
    /* Bandwidth (video): the publisher's SSRC as last seen, and the
     * subscriber's latest REMB with when it came; all atomic. */
    guint32 ssrc;
    guint64 remb_bps;
    gint64 remb_at_us, remb_sent_us;
} Fanout;

/* Keyframe requests to one publisher: at most one per this interval,
 * however many subscribers (and their PLIs and FIRs) ask; the keyframe
 * asked for answers them all. */
#define KEYFRAME_REQUEST_INTERVAL_US (500 * 1000)

struct Session {
    MediaRoom *room; /* not a ref: the room outlives its sessions */
    char *id;
    ConsultdRole role;
    int src; /* publisher: its source; subscriber: the source it receives
              * (its stream: source_stream()) */
    gboolean publish;
    guint32 req;
    GstElement *webrtc;
    gboolean answered, joined, closed;
    gint packets;       /* publisher: RTP packets seen (atomic) */
    gint queue_trimmed; /* publisher: media_trim_receive_queue() called (atomic) */
    gint last_packets;
    gint64 progress_at; /* monotonic us of the last change of packets */
    gint64 started_at;
    Relay *relay[MEDIA_N_KINDS];
    guint video_fb;        /* MEDIA_OFFER_FB_* of its offer's video codec */
    gboolean rtcp_watched; /* subscriber: on_subscriber_rtcp() added;
                            * publisher: on_publisher_rtcp() connected */
    GObject *rtp_session;  /* publisher: its rtpbin's RTPSession, once watched */
    GstPad *rtcp_pad;      /* subscriber: where on_subscriber_rtcp() is (a ref) */
    gulong rtcp_probe;
    guint64 lost; /* publisher: latest inbound packets-lost */
    guint ticks;  /* publisher: media_room_tick() calls since answered */
};

struct MediaRoom {
    gint64 id;
    GstElement *pipe;
    guint bus_watch;
    MediaWorkerConfig cfg; /* borrowed strings: the worker's config outlives rooms */
    MediaRoomHooks hooks;
    GstElement *tee[N_SOURCES][MEDIA_N_KINDS];
    Fanout fan[N_SOURCES][MEDIA_N_KINDS];
    Session *pub[N_SOURCES]; /* by the source published */
    Session *sub[N_SOURCES]; /* by the source received */
    GHashTable *sessions;    /* id -> Session * (a ref) */
    RecRecording *rec[N_SOURCES];
    const char *held;          /* recording held, and why (static text); NULL: records */
    guint rec_next[N_SOURCES]; /* where each series goes on (0, 1: its start) */
};

static Session *
session_ref(Session *s)
{
    return g_atomic_rc_box_acquire(s);
}

static void
session_clear(Session *s)
{
    g_free(s->id);
    if (s->webrtc)
        gst_object_unref(s->webrtc);
}

static void
session_unref(Session *s)
{
    g_atomic_rc_box_release_full(s, (GDestroyNotify)session_clear);
}

static void
session_unref_closure(gpointer data, GClosure *closure)
{
    session_unref(data);
}

/* ------------------------------------------------------------- SDP, caps */

static GstCaps *
track_caps_of(int kind, const MediaOfferTrack *t)
{
    if (kind == MEDIA_KIND_AUDIO)
        return gst_caps_new_simple("application/x-rtp", "media", G_TYPE_STRING, "audio",
                                   "encoding-name", G_TYPE_STRING, "OPUS", "payload", G_TYPE_INT,
                                   (int)t->pt, "clock-rate", G_TYPE_INT, 48000, "encoding-params",
                                   G_TYPE_STRING, "2", NULL);
    GstCaps *c = gst_caps_new_simple(
        "application/x-rtp", "media", G_TYPE_STRING, "video", "encoding-name", G_TYPE_STRING,
        t->codec, "payload", G_TYPE_INT, (int)t->pt, "clock-rate", G_TYPE_INT, 90000,
        "rtcp-fb-nack", G_TYPE_BOOLEAN, TRUE, "rtcp-fb-nack-pli", G_TYPE_BOOLEAN, TRUE,
        "rtcp-fb-ccm-fir", G_TYPE_BOOLEAN, TRUE, NULL);
    if (!strcmp(t->codec, "H264"))
        gst_caps_set_simple(c, "packetization-mode", G_TYPE_STRING, "1", NULL);
    return c;
}

/* The caps a track is received or sent with.  A publisher's carry the
 * transport-wide-cc extension when the offer has it: webrtcbin then answers
 * with it and rtpsession sends transport-cc feedback, from which the
 * publisher's own congestion control (GCC in browsers) sizes its first leg. */
static GstCaps *
track_caps(int kind, const MediaOfferTrack *t, gboolean publish)
{
    GstCaps *c = track_caps_of(kind, t);
    if (publish && t->twcc_id) {
        g_autofree char *field = g_strdup_printf("extmap-%u", t->twcc_id);
        gst_caps_set_simple(c, field, G_TYPE_STRING, MEDIA_TWCC_URI, NULL);
    }
    return c;
}

/* ---------------------------------------------------------------- relays */

/* abs-send-time (RFC 5285 one-byte extension, draft "abs-send-time"):
 * when we send, in seconds as 6.18 fixed point, 24 bits. */
static void
put_abs_send_time(guint8 *at)
{
    guint64 t = ((guint64)g_get_monotonic_time() << 18) / G_USEC_PER_SEC;
    at[0] = (guint8)(t >> 16);
    at[1] = (guint8)(t >> 8);
    at[2] = (guint8)t;
}

/* Copies an RTP packet with payload type PT and without the publisher's
 * header extensions (their ids mean nothing in the subscriber's session).
 * With AST_ID (1-14) it carries one of ours instead: abs-send-time, stamped
 * now, from which the subscriber's receive-side estimator (REMB) measures
 * the path from us to it alone. */
static GstBuffer *
rewrite_rtp(GstBuffer *in, guint8 pt, guint ast_id)
{
    GstMapInfo mi;
    if (!gst_buffer_map(in, &mi, GST_MAP_READ))
        return NULL;
    const guint8 *d = mi.data;
    gsize n = mi.size;
    GstBuffer *out = NULL;
    if (n >= 12 && (d[0] >> 6) == 2) {
        gsize hdr = 12 + 4 * (d[0] & 0x0f);
        gsize skip = 0;
        if ((d[0] & 0x10) && n >= hdr + 4)
            skip = 4 + 4 * (gsize)((d[hdr + 2] << 8) | d[hdr + 3]);
        gsize ext = ast_id ? 8 : 0;
        if (hdr + skip <= n) {
            guint8 *o = g_malloc(n - skip + ext);
            memcpy(o, d, hdr);
            if (ext) {
                static const guint8 head[4] = {0xbe, 0xde, 0x00, 0x01};
                memcpy(o + hdr, head, 4);
                o[hdr + 4] = (guint8)((ast_id << 4) | 2); /* id, 3 bytes */
                put_abs_send_time(o + hdr + 5);
            }
            memcpy(o + hdr + ext, d + hdr + skip, n - hdr - skip);
            o[0] = (guint8)(ext ? o[0] | 0x10 : o[0] & ~0x10);
            o[1] = (guint8)((o[1] & 0x80) | (pt & 0x7f));
            out = gst_buffer_new_wrapped(o, n - skip + ext);
            gst_buffer_copy_into(out, in, GST_BUFFER_COPY_TIMESTAMPS | GST_BUFFER_COPY_FLAGS, 0,
                                 -1);
        }
    }
    gst_buffer_unmap(in, &mi);
    return out;
}

/* A packet of the history, sent again: a copy with abs-send-time stamped
 * anew where it has one (rewrite_rtp()), or the packet itself. */
static GstBuffer *
restamp(Relay *r, GstBuffer *b)
{
    if (!r->ast_id)
        return b;
    GstBuffer *c = gst_buffer_copy_deep(b);
    gst_buffer_unref(b);
    GstMapInfo mi;
    if (gst_buffer_map(c, &mi, GST_MAP_WRITE)) {
        gsize hdr = 12 + 4 * (mi.data[0] & 0x0f);
        if (mi.size >= hdr + 8)
            put_abs_send_time(mi.data + hdr + 5);
        gst_buffer_unmap(c, &mi);
    }
    return c;
}

static void
relay_push(Relay *r, GstBuffer *out)
{
    if (r->history)
        media_history_put(r->history, out);
    /* The result never goes further: see "Isolation" above. */
    GstFlowReturn ret = gst_pad_push(r->src, out);
    media_count(MEDIA_PACKETS_OUT);
    if (ret < GST_FLOW_EOS && g_atomic_int_compare_and_exchange(&r->failed, 0, 1))
        g_warning("relay %s:%s: %s; the publisher is not affected", r->sub->id,
                  GST_PAD_NAME(r->src), gst_flow_get_name(ret));
}

static void
fan_one(Fanout *f, GstBuffer *buf)
{
    for (guint i = 0; i < f->relays->len; i++) {
        Relay *r = f->relays->pdata[i];
        GstBuffer *out = rewrite_rtp(buf, r->pt, r->ast_id);
        if (!out)
            continue;
        if (!g_atomic_int_get(&r->connected)) {
            g_queue_push_tail(&r->pending, out);
            if (r->pending.length > RELAY_PENDING_MAX)
                gst_buffer_unref(g_queue_pop_head(&r->pending));
            continue;
        }
        if (r->trim == MEDIA_TRIM_LATER)
            r->trim = media_trim_send_path(r->sink_pad);
        GstBuffer *early;
        while ((early = g_queue_pop_head(&r->pending)))
            relay_push(r, early);
        relay_push(r, out);
    }
}

/* Publisher's streaming thread: every packet on its way into the tee. */
static GstPadProbeReturn
fan_out(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    Fanout *f = data;
    MediaRtpHead rtp;
    /* Once per publisher session (media_room_offer() clears it). */
    if (G_UNLIKELY(!__atomic_load_n(&f->ssrc, __ATOMIC_RELAXED)) &&
        (info->type & GST_PAD_PROBE_TYPE_BUFFER) &&
        media_rtp_head(GST_PAD_PROBE_INFO_BUFFER(info), &rtp))
        __atomic_store_n(&f->ssrc, rtp.ssrc, __ATOMIC_RELAXED);
    g_mutex_lock(&f->lock);
    if (f->relays->len == 0) {
        /* nobody to relay to */
    } else if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
        fan_one(f, GST_PAD_PROBE_INFO_BUFFER(info));
    } else if (info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
        GstBufferList *l = GST_PAD_PROBE_INFO_BUFFER_LIST(info);
        for (guint i = 0, n = gst_buffer_list_length(l); i < n; i++)
            fan_one(f, gst_buffer_list_get(l, i));
    }
    g_mutex_unlock(&f->lock);
    return GST_PAD_PROBE_OK;
}

/* Asks F's publisher for a keyframe, unless that was done less than
 * KEYFRAME_REQUEST_INTERVAL_US ago (its keyframe is on its way).  The
 * upstream force-key-unit event gains the payload type at rtpptdemux and
 * the SSRC at rtpssrcdemux, and the publisher's rtpsession turns it into
 * a PLI (or a FIR where only that is negotiated).  Any thread. */
static void
fanout_request_keyframe(Fanout *f)
{
    if (!media_throttle(&f->keyframe_asked_us, g_get_monotonic_time(),
                        KEYFRAME_REQUEST_INTERVAL_US))
        return;
    /* all-headers FALSE: a PLI.  With TRUE rtpsession sends a FIR, and
     * with the same count each time it keeps the FIR's sequence number,
     * so the publisher takes every FIR after the first for a repeat and
     * ignores it (RFC 5104 4.3.1.2): measured, 3 requests -> 1 keyframe. */
    if (gst_pad_push_event(f->tee_sink, gst_video_event_new_upstream_force_key_unit(
                                            GST_CLOCK_TIME_NONE, FALSE, 0)))
        media_count(MEDIA_KEYFRAME_REQUESTS);
    else
        /* No publisher behind the fan-out yet (a subscriber that came
         * first): the request went nowhere, so it must not hold back the
         * one made when the publisher's media starts, which would otherwise
         * fall in the same interval and be dropped, leaving the subscriber
         * to wait for the publisher's next periodic keyframe. */
        __atomic_store_n(&f->keyframe_asked_us, 0, __ATOMIC_RELAXED);
}

/* Upstream events reaching a relay pad (subscriber's threads): keyframe
 * requests go on towards the publisher; the rest ends here (NACKs are
 * answered from the relay's history: on_subscriber_rtcp()).  Only the
 * Fanout is used, which lives as long as the room. */
static gboolean
relay_src_event(GstPad *pad, GstObject *parent, GstEvent *ev)
{
    Fanout *f = gst_pad_get_element_private(pad);
    if (gst_video_event_is_force_key_unit(ev))
        fanout_request_keyframe(f);
    gst_event_unref(ev);
    return TRUE;
}

static void
request_keyframe(Relay *r)
{
    fanout_request_keyframe(&r->room->fan[r->from][r->kind]);
}

/* Puts R in its publisher's fan-out once its subscriber is answered (main
 * loop); it sends once connected. */
static void
relay_attach(Relay *r)
{
    if (r->attached || !r->sub->answered)
        return;
    /* Fault injection for the isolation test: caps the subscriber's
     * webrtcbin refuses, so that every push fails with not-negotiated. */
    if (!g_strcmp0(g_getenv("CONSULTD_MEDIA_FAULT"), "break-relay")) {
        g_autoptr(GstCaps) bad = gst_pad_get_current_caps(r->src);
        if (bad) {
            bad = gst_caps_make_writable(bad);
            gst_caps_set_simple(bad, "clock-rate", G_TYPE_INT, 12345, NULL);
            gst_pad_push_event(r->src, gst_event_new_caps(bad));
        }
    }
    Fanout *f = &r->room->fan[r->from][r->kind];
    g_mutex_lock(&f->lock);
    g_ptr_array_add(f->relays, r);
    g_mutex_unlock(&f->lock);
    r->attached = TRUE;
    request_keyframe(r);
}

/* Sticky events on the send path.  webrtcbin's rtpfunnel (bundle: audio
 * and video into one RTP session) re-sends the segment and the custom
 * sticky events of its input each time the input changes, which with
 * audio between video packets is most packets; each such event then walks
 * the whole send path (rtpbin, rtpsession, dtlssrtpenc, srtpenc, the
 * funnels, nicesink: about 10 pads, each event function forwarding it
 * through an iterator of internal links): 18 % of the worker's
 * instructions (callgrind, docs/benchmarks.md).  A pad stores a sticky
 * event it already holds without sending it on again, so:
 *
 * - every relay pad carries the same segment event (all are the same
 *   default TIME segment anyway), so the one the funnel re-sends is the one
 *   its source pad already holds;
 * - webrtcbin's GstWebRtcBinUpdateTos event (one per transceiver, carrying
 *   its mid) ends at the webrtcbin sink pad.  Its only reader sets the DSCP
 *   of a sender with a non-default priority, and our senders have none. */
static GstEvent *
relay_segment(void)
{
    static GstEvent *ev;
    if (g_once_init_enter(&ev)) {
        GstSegment seg;
        gst_segment_init(&seg, GST_FORMAT_TIME);
        g_once_init_leave(&ev, gst_event_new_segment(&seg));
    }
    return gst_event_ref(ev);
}

static GstPadProbeReturn
drop_tos_event(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    GstEvent *ev = GST_PAD_PROBE_INFO_EVENT(info);
    return GST_EVENT_TYPE(ev) == GST_EVENT_CUSTOM_DOWNSTREAM_STICKY &&
                   gst_event_has_name(ev, "GstWebRtcBinUpdateTos")
               ? GST_PAD_PROBE_DROP
               : GST_PAD_PROBE_OK;
}

static Relay *
relay_new(MediaRoom *room, Session *sub, int kind, const MediaOfferTrack *t)
{
    Relay *r = g_new0(Relay, 1);
    r->room = room;
    r->sub = sub;
    r->kind = kind;
    r->from = sub->src;
    r->pt = (guint8)t->pt;
    g_autoptr(GstCaps) caps = track_caps(kind, t, FALSE);
    GstPadTemplate *templ =
        gst_element_class_get_pad_template(GST_ELEMENT_GET_CLASS(sub->webrtc), "sink_%u");
    /* Naming the pad after the offer's m-line binds its transceiver to it;
     * without a name webrtcbin 1.22 may answer the m-line with a fresh,
     * inactive transceiver instead. */
    g_autofree char *pad_name = g_strdup_printf("sink_%u", t->mline);
    r->sink_pad = gst_element_request_pad(sub->webrtc, templ, pad_name, caps);
    gst_pad_add_probe(r->sink_pad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, drop_tos_event, NULL, NULL);
    /* Only for a subscriber that NACKs at all. */
    if (kind == MEDIA_KIND_VIDEO && (t->fb & MEDIA_OFFER_FB_NACK))
        r->history = media_history_new();
    if (kind == MEDIA_KIND_VIDEO)
        r->ast_id = t->ast_id;
    GstWebRTCRTPTransceiver *trans = NULL;
    g_object_get(r->sink_pad, "transceiver", &trans, NULL);
    g_object_set(trans, "direction", GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY,
                 "codec-preferences", caps, NULL);
    gst_object_unref(trans);
    g_autofree char *src_name =
        g_strdup_printf("relay-%s-%s", source_name(r->from), kind_names[kind]);
    r->src = gst_object_ref_sink(gst_pad_new(src_name, GST_PAD_SRC));
    gst_pad_set_element_private(r->src, &room->fan[r->from][kind]);
    gst_pad_set_event_function(r->src, relay_src_event);
    gst_pad_use_fixed_caps(r->src);
    gst_pad_set_active(r->src, TRUE);
    gst_pad_link(r->src, r->sink_pad);
    /* Sticky: kept on our pad and sent before the first packet if webrtcbin
     * does not take them yet. */
    g_autofree char *stream_id = g_strdup_printf("%s-%s", sub->id, src_name);
    gst_pad_push_event(r->src, gst_event_new_stream_start(stream_id));
    gst_pad_push_event(r->src, gst_event_new_caps(caps));
    gst_pad_push_event(r->src, relay_segment());
    return r;
}

static void
relay_free(Relay *r)
{
    if (!r)
        return;
    if (r->attached) {
        Fanout *f = &r->room->fan[r->from][r->kind];
        g_mutex_lock(&f->lock); /* waits for a push in progress */
        g_ptr_array_remove_fast(f->relays, r);
        g_queue_clear_full(&r->pending, (GDestroyNotify)gst_buffer_unref);
        g_mutex_unlock(&f->lock);
    }
    gst_pad_set_active(r->src, FALSE);
    /* webrtcbin's sink pad, or the funnel's past it (trim.h) */
    GstPad *peer = gst_pad_get_peer(r->src);
    if (peer) {
        gst_pad_unlink(r->src, peer);
        gst_object_unref(peer);
    }
    gst_object_unref(r->src);
    g_clear_object(&r->sink_pad);
    media_history_free(r->history);
    g_free(r);
}

/* ------------------------------------------------------------ recording */

typedef struct {
    MediaRoomHooks hooks;
    gint64 consultation;
    ConsultdRole role;
    gint64 started_at;
    const char *why; /* static text: why it stopped early, or NULL */
} RecReport;

static void
rec_done(gpointer data, const char *path, ConsultdRecState state, const char *reason,
         gint64 duration_ms, gint64 size, gint64 lead_ms)
{
    RecReport *rr = data;
    g_autofree char *file = g_path_get_basename(path);
    /* Where the content begins on the consultation's timeline. */
    gint64 started = rr->started_at > lead_ms ? rr->started_at - lead_ms : rr->started_at;
    rr->hooks.recording(rr->hooks.data, rr->consultation, rr->role, file, state,
                        reason ? reason : rr->why, started, duration_ms, size);
    g_free(rr);
}

void
media_room_set_rec_next(MediaRoom *room, ConsultdRole role, ConsultdStream stream, guint n)
{
    if ((guint)role < CONSULTD_N_ROLES && (guint)stream < CONSULTD_N_STREAMS)
        room->rec_next[source_of(role, stream)] = n;
}

/* Starts recording source SRC into the first free name of its series:
 * teacher.webm, then teacher-2.webm, ... (a rejoin never overwrites;
 * teacher-screen.webm, ... for a screen), from where the signaling side
 * says it goes on. */
static void
recording_start(MediaRoom *room, int src)
{
    if (!room->cfg.recordings_dir || room->rec[src] || room->held)
        return;
    ConsultdRole role = source_role(src);
    g_autofree char *path = NULL;
    for (guint n = MAX(1, room->rec_next[src]); !path || g_file_test(path, G_FILE_TEST_EXISTS);
         n++) {
        g_autofree char *name = consultd_recording_file(role, source_stream(src), n);
        g_free(path);
        path = consultd_recording_path(room->cfg.recordings_dir, room->id, name);
    }
    g_autoptr(GError) err = NULL;
    room->rec[src] = rec_start(room->cfg.recorder, room->tee[src][MEDIA_KIND_VIDEO],
                               room->tee[src][MEDIA_KIND_AUDIO], path, &err);
    g_autofree char *file = g_path_get_basename(path);
    if (!room->rec[src]) {
        g_warning("room %" G_GINT64_FORMAT ": cannot record %s: %s", room->id, source_name(src),
                  err->message);
        room->hooks.recording(room->hooks.data, room->id, role, file, CONSULTD_REC_FAILED,
                              err->message, 0, 0, 0);
        return;
    }
    room->hooks.recording(room->hooks.data, room->id, role, file, CONSULTD_REC_RECORDING, NULL,
                          g_get_real_time() / 1000, 0, 0);
}

/* Stops source SRC's recording; WHY (static text, or NULL) is reported as
 * the reason it ended early. */
static void
recording_stop(MediaRoom *room, int src, const char *why)
{
    RecRecording *rec = g_steal_pointer(&room->rec[src]);
    if (!rec)
        return;
    ConsultdRole role = source_role(src);
    RecReport *rr = g_new0(RecReport, 1);
    rr->why = why;
    rr->hooks = room->hooks;
    rr->consultation = room->id;
    rr->role = role;
    rr->started_at = rec_started_at(rec);
    g_autofree char *file = g_path_get_basename(rec_path(rec));
    room->hooks.recording(room->hooks.data, room->id, role, file, CONSULTD_REC_PROCESSING, NULL,
                          rr->started_at, 0, 0);
    rec_stop(rec, 5000, rec_done, rr);
}

/* ------------------------------------------------------------- sessions */

static GstPadProbeReturn
count_in(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    Session *s = data;
    g_atomic_int_inc(&s->packets);
    media_count(MEDIA_PACKETS_IN);
    return GST_PAD_PROBE_OK;
}

/* Streaming thread: a publisher's track appeared; feed it to its tee.  Only
 * immutable state is read here (the tees never change). */
static void
on_pad_added(GstElement *webrtc, GstPad *pad, gpointer data)
{
    Session *s = data;
    if (GST_PAD_DIRECTION(pad) != GST_PAD_SRC)
        return;
    g_autoptr(GstCaps) caps = gst_pad_get_current_caps(pad);
    if (!caps)
        caps = gst_pad_query_caps(pad, NULL);
    const GstStructure *st = gst_caps_get_structure(caps, 0);
    const char *media = gst_structure_get_string(st, "media");
    int kind = !g_strcmp0(media, "audio") ? MEDIA_KIND_AUDIO : MEDIA_KIND_VIDEO;
    GstElement *tee = s->room->tee[s->src][kind];
    GstPad *tsink = gst_element_get_static_pad(tee, "sink");
    GstPad *old = gst_pad_get_peer(tsink);
    if (old) {
        gst_pad_unlink(old, tsink);
        gst_object_unref(old);
    }
    /* The pad that pushes: rtpptdemux's, behind rtpbin's and webrtcbin's
     * ghost pads.  No packet has gone out of it yet (rtpptdemux announces
     * it first), so it can be linked straight to the tee. */
    GstPad *real = gst_object_ref(pad);
    while (real && GST_IS_GHOST_PAD(real)) {
        GstPad *target = gst_ghost_pad_get_target(GST_GHOST_PAD(real));
        gst_object_unref(real);
        real = target;
    }
    gst_pad_add_probe(real ? real : pad, GST_PAD_PROBE_TYPE_BUFFER, count_in, s, NULL);
    if (gst_pad_link(pad, tsink) != GST_PAD_LINK_OK)
        g_warning("room %" G_GINT64_FORMAT ": cannot link %s %s", s->room->id, source_name(s->src),
                  kind_names[kind]);
    else if (!real || !media_trim_skip_ghosts(real))
        g_warning("trim: could not link rtpptdemux to the tee past the ghost pads; kept");
    g_clear_object(&real);
    gst_object_unref(tsink);
    /* A subscriber already waiting asked before this track had a path
     * upstream; ask now that it has one. */
    Fanout *f = &s->room->fan[s->src][kind];
    g_mutex_lock(&f->lock);
    gboolean waiting = f->relays->len > 0;
    g_mutex_unlock(&f->lock);
    if (kind == MEDIA_KIND_VIDEO && waiting)
        fanout_request_keyframe(f);
}

static void recording_start(MediaRoom *room, int src);

typedef struct {
    Session *s;
    char *sdp; /* answer text, or NULL on error */
    char *error;
} Reply;

static gboolean
reply_on_loop(gpointer data)
{
    Reply *rp = data;
    Session *s = rp->s;
    MediaRoom *room = s->room;
    if (!s->closed && !s->answered) {
        if (rp->sdp) {
            s->answered = TRUE;
            room->hooks.answer(room->hooks.data, s->req, s->id, rp->sdp);
            /* Record from the start: the file begins with the first
             * keyframe, and a publisher that never sends leaves "empty". */
            if (s->publish)
                recording_start(room, s->src);
            for (int k = 0; k < MEDIA_N_KINDS; k++)
                if (s->relay[k])
                    relay_attach(s->relay[k]);
        } else {
            room->hooks.error(room->hooks.data, s->req, s->id, "bad_offer",
                              rp->error ? rp->error : "negotiation failed");
            media_room_close_session(room, s->id);
        }
    }
    session_unref(s);
    g_free(rp->sdp);
    g_free(rp->error);
    g_free(rp);
    return G_SOURCE_REMOVE;
}

static void
reply(Session *s, char *sdp, const char *error)
{
    Reply *rp = g_new0(Reply, 1);
    rp->s = session_ref(s);
    rp->sdp = sdp;
    rp->error = g_strdup(error);
    g_main_context_invoke(NULL, reply_on_loop, rp);
}

/* Rewrites host candidates to the advertised public address (1:1 NAT). */
static char *
advertise(const MediaWorkerConfig *cfg, char *sdp)
{
    if (!cfg->public_ip || !*cfg->public_ip)
        return sdp;
    g_auto(GStrv) lines = g_strsplit(sdp, "\r\n", -1);
    for (guint i = 0; lines[i]; i++) {
        if (!g_str_has_prefix(lines[i], "a=candidate:") || !strstr(lines[i], " typ host"))
            continue;
        g_auto(GStrv) f = g_strsplit(lines[i], " ", -1);
        if (g_strv_length(f) > 5 && strcmp(f[4], "127.0.0.1")) {
            g_free(f[4]);
            f[4] = g_strdup(cfg->public_ip);
            g_free(lines[i]);
            lines[i] = g_strjoinv(" ", f);
        }
    }
    g_free(sdp);
    return g_strjoinv("\r\n", lines);
}

/* What the answer says beyond what webrtcbin 1.22 writes, because the
 * relay does it rather than webrtcbin (docs/architecture.md, "Loss
 * repair"):
 *
 * - "a=rtcp-fb:PT nack" on the video codec: we NACK a publisher's missing
 *   packets (rtppass.h) and answer a subscriber's NACKs (room.c,
 *   on_subscriber_rtcp()).  webrtcbin writes it only with the
 *   transceiver's do-nack, which also negotiates RTX through its
 *   rtprtxsend/rtprtxreceive (taken off the path: trim.h) and signals a
 *   sender SSRC of 0 for our relay pads; so it stays off, and
 *   retransmissions are plain (same SSRC and sequence number, RFC 4585).
 * - "a=msid" on a subscriber's m-lines: both tracks of one participant in
 *   one stream, so that the receiver plays them in sync.
 * - "a=content:slides" on a shared screen's video (RFC 4796).
 */
static void
complete_answer(GstSDPMessage *sdp, const Session *s)
{
    for (guint i = 0; i < gst_sdp_message_medias_len(sdp); i++) {
        GstSDPMedia *m = (GstSDPMedia *)gst_sdp_message_get_media(sdp, i);
        const char *media = gst_sdp_media_get_media(m);
        gboolean video = !g_strcmp0(media, "video");
        if (!video && g_strcmp0(media, "audio"))
            continue;
        if (video && s->publish)
            gst_sdp_media_add_bandwidth(m, "AS", s->room->cfg.max_kbps);
        /* RFC 4796: a shared screen's video is slides (text: resolution
         * matters more than motion). */
        if (video && source_stream(s->src) == CONSULTD_STREAM_SCREEN)
            gst_sdp_media_add_attribute(m, "content", "slides");
        if (!s->publish) {
            g_autofree char *msid = g_strdup_printf("consultd-%s %s-%s", source_name(s->src),
                                                    source_name(s->src), media);
            gst_sdp_media_add_attribute(m, "msid", msid);
        }
        for (guint f = 0; video && f < gst_sdp_media_formats_len(m); f++) {
            const char *pt = gst_sdp_media_get_format(m, f);
            g_autofree char *pli = g_strdup_printf("%s nack pli", pt);
            g_autofree char *nack = g_strdup_printf("%s nack", pt);
            gboolean has_pli = FALSE, has_nack = FALSE;
            for (guint a = 0; a < gst_sdp_media_attributes_len(m); a++) {
                const GstSDPAttribute *at = gst_sdp_media_get_attribute(m, a);
                if (g_strcmp0(at->key, "rtcp-fb"))
                    continue;
                has_pli |= !g_strcmp0(at->value, pli);
                has_nack |= !g_strcmp0(at->value, nack);
            }
            if (has_pli && !has_nack && (s->video_fb & MEDIA_OFFER_FB_NACK))
                gst_sdp_media_add_attribute(m, "rtcp-fb", nack);
            if (has_pli && !s->publish && (s->video_fb & MEDIA_OFFER_FB_REMB)) {
                g_autofree char *remb = g_strdup_printf("%s goog-remb", pt);
                gst_sdp_media_add_attribute(m, "rtcp-fb", remb);
            }
        }
        Relay *r = !s->publish && video ? s->relay[MEDIA_KIND_VIDEO] : NULL;
        if (r && r->ast_id) {
            g_autofree char *ext = g_strdup_printf("%u %s", r->ast_id, MEDIA_AST_URI);
            gst_sdp_media_add_attribute(m, "extmap", ext);
        }
        /* transport-cc without its header extension is inert; toward a
         * subscriber it would also stop REMB (the receiver's estimate,
         * which we pass on to the publisher). */
        gboolean twcc = FALSE;
        for (guint a = 0; a < gst_sdp_media_attributes_len(m); a++) {
            const GstSDPAttribute *at = gst_sdp_media_get_attribute(m, a);
            twcc |= !g_strcmp0(at->key, "extmap") && at->value && strstr(at->value, MEDIA_TWCC_URI);
        }
        for (guint a = gst_sdp_media_attributes_len(m); !twcc && a-- > 0;) {
            const GstSDPAttribute *at = gst_sdp_media_get_attribute(m, a);
            if (!g_strcmp0(at->key, "rtcp-fb") && at->value &&
                g_str_has_suffix(at->value, " transport-cc"))
                gst_sdp_media_remove_attribute(m, a);
        }
    }
}

static void
on_gathering(GstElement *webrtc, GParamSpec *ps, gpointer data)
{
    Session *s = data;
    GstWebRTCICEGatheringState st;
    g_object_get(webrtc, "ice-gathering-state", &st, NULL);
    if (st != GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE)
        return;
    GstWebRTCSessionDescription *local = NULL;
    g_object_get(webrtc, "local-description", &local, NULL);
    if (!local) {
        reply(s, NULL, "no local description");
        return;
    }
    complete_answer(local->sdp, s);
    char *text = gst_sdp_message_as_text(local->sdp);
    gst_webrtc_session_description_free(local);
    reply(s, advertise(&s->room->cfg, text), NULL);
}

static void
on_answer_created(GstPromise *p, gpointer data)
{
    Session *s = data;
    const GstStructure *r = gst_promise_get_reply(p);
    GstWebRTCSessionDescription *answer = NULL;
    GError *err = NULL;
    if (r)
        gst_structure_get(r, "answer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &answer, NULL);
    if (r && !answer)
        gst_structure_get(r, "error", G_TYPE_ERROR, &err, NULL);
    gst_promise_unref(p);
    if (!answer) {
        reply(s, NULL, err ? err->message : "webrtcbin created no answer");
        g_clear_error(&err);
        return;
    }
    g_signal_emit_by_name(s->webrtc, "set-local-description", answer, NULL);
    gst_webrtc_session_description_free(answer);
}

static void
on_remote_set(GstPromise *p, gpointer data)
{
    Session *s = data;
    const GstStructure *r = gst_promise_get_reply(p);
    GError *err = NULL;
    if (r && gst_structure_has_field(r, "error"))
        gst_structure_get(r, "error", G_TYPE_ERROR, &err, NULL);
    gst_promise_unref(p);
    if (err) {
        reply(s, NULL, err->message);
        g_error_free(err);
        return;
    }
    if (s->closed)
        return;
    GstPromise *next = gst_promise_new_with_change_func(on_answer_created, session_ref(s),
                                                        (GDestroyNotify)session_unref);
    g_signal_emit_by_name(s->webrtc, "create-answer", NULL, next);
}

/* The relay of S's that carries KIND, while it is attached; call with
 * the publisher's fan-out lock held (relay_free() takes a relay out of its
 * fan-out under that lock before freeing it). */
static Relay *
attached_relay(Fanout *f, Session *s)
{
    for (guint i = 0; i < f->relays->len; i++) {
        Relay *r = f->relays->pdata[i];
        if (r->sub == s)
            return r;
    }
    return NULL;
}

/* Subscriber's RTCP thread: every compound RTCP packet it sends us, before
 * its rtpsession reads it.  A NACK is answered from the video relay's
 * history, at once and in this thread, with the packet as it was first
 * sent (same SSRC and sequence number: plain retransmission, which every
 * receiver understands; srtpenc allows the repeat, see
 * on_subscriber_element()).  A PLI or FIR becomes a keyframe request to the
 * publisher (throttled per publisher).  webrtcbin's own path for both ends
 * in rtpfunnel, which routes upstream events by SSRCs it never learns from
 * our caps (issue 18): so they are taken here, and what rtpsession makes of
 * them upstream is dropped at the relay pad. */
static GstPadProbeReturn
on_subscriber_rtcp(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    Session *s = data;
    MediaFeedback fb;
    if (!(info->type & GST_PAD_PROBE_TYPE_BUFFER) ||
        !media_feedback_scan(GST_PAD_PROBE_INFO_BUFFER(info), &fb))
        return GST_PAD_PROBE_OK;
    Fanout *f = &s->room->fan[s->src][MEDIA_KIND_VIDEO];
    if (fb.plis || fb.firs)
        fanout_request_keyframe(f);
    if (fb.remb_bps) {
        __atomic_store_n(&f->remb_bps, fb.remb_bps, __ATOMIC_RELAXED);
        __atomic_store_n(&f->remb_at_us, g_get_monotonic_time(), __ATOMIC_RELAXED);
    }
    if (!fb.n_nacks)
        return GST_PAD_PROBE_OK;
    g_mutex_lock(&f->lock);
    Relay *r = attached_relay(f, s);
    for (guint i = 0; r && r->history && i < fb.n_nacks; i++) {
        media_count(MEDIA_NACKS_RECEIVED);
        GstBuffer *b = media_history_get(r->history, fb.nacks[i]);
        if (!b)
            continue;
        GstFlowReturn ret = gst_pad_push(r->src, restamp(r, b));
        if (ret == GST_FLOW_OK)
            media_count(MEDIA_RETRANSMITTED);
    }
    g_mutex_unlock(&f->lock);
    return GST_PAD_PROBE_OK;
}

static void
watch_subscriber_rtcp(Session *s)
{
    GstElement *session = media_webrtc_find(s->webrtc, "rtpsession", "rtpbin");
    GstPad *pad = session ? gst_element_get_static_pad(session, "recv_rtcp_sink") : NULL;
    /* The probe's session ref makes a cycle (session -> webrtcbin -> pad
     * -> probe -> session), broken in session_stop(). */
    if (pad) {
        s->rtcp_probe = gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, on_subscriber_rtcp,
                                          session_ref(s), (GDestroyNotify)session_unref);
        s->rtcp_pad = g_steal_pointer(&pad);
    } else {
        g_warning("session %s: no rtpsession RTCP input found: NACKs and PLIs go unanswered",
                  s->id);
    }
    g_clear_object(&session);
}

/* Subscriber's webrtcbin built an element.  Its srtpenc must let a packet
 * be protected twice with the same index (libsrtp refuses by default), or
 * a retransmission never leaves.  The same packet with the same key and
 * index gives the same ciphertext, so nothing is revealed by it. */
static void
on_subscriber_element(GstBin *bin, GstBin *sub_bin, GstElement *e, gpointer data)
{
    GstElementFactory *f = gst_element_get_factory(e);
    if (f && !g_strcmp0(GST_OBJECT_NAME(f), "srtpenc"))
        g_object_set(e, "allow-repeat-tx", TRUE, NULL);
}

/* The publisher's RTCP interval at least (every compound packet costs an
 * SRTCP encryption and a send; at the real bandwidth rtpsession would send
 * 28 a second). */
#define RTCP_MIN_INTERVAL_NS (100 * GST_MSECOND)

/* How long a subscriber's REMB counts: Chromium sends one about every
 * 200 ms to 1 s while it receives; one that stops sending stops counting. */
#define REMB_FRESH_US (5 * G_USEC_PER_SEC)
/* How often the publisher gets a REMB: rtpsession sends RTCP with every
 * transport-cc feedback, far more often than that. */
#define REMB_INTERVAL_US (250 * 1000)

/* Publisher's RTCP thread: rtpsession is building a compound RTCP packet
 * for the publisher.  It gets a REMB: the subscriber's own estimate of its
 * path (its REMB, read in on_subscriber_rtcp()) capped by max_kbps, or
 * max_kbps alone.  So a publisher whose viewer sits behind a narrow link
 * sends what that link carries, not what its own uplink does (its
 * congestion control takes the lower of its own estimate and a REMB).
 * Reads atomics and the room's config only. */
static gboolean
on_publisher_rtcp(GObject *session, GstBuffer *buf, gboolean early, gpointer data)
{
    Session *s = data;
    Fanout *f = &s->room->fan[s->src][MEDIA_KIND_VIDEO];
    gint64 now = g_get_monotonic_time();
    guint32 media_ssrc = __atomic_load_n(&f->ssrc, __ATOMIC_RELAXED);
    if (!media_ssrc || !media_throttle(&f->remb_sent_us, now, REMB_INTERVAL_US))
        return FALSE;
    guint64 bps = (guint64)s->room->cfg.max_kbps * 1000;
    guint64 remb = __atomic_load_n(&f->remb_bps, __ATOMIC_RELAXED);
    if (remb && now - __atomic_load_n(&f->remb_at_us, __ATOMIC_RELAXED) < REMB_FRESH_US)
        bps = MIN(bps, remb);
    guint own = 0;
    g_object_get(session, "internal-ssrc", &own, NULL);
    return media_remb_add(buf, own, media_ssrc, bps);
}

static void
watch_publisher_rtcp(Session *s)
{
    GstElement *rtpbin = gst_bin_get_by_name(GST_BIN(s->webrtc), "rtpbin");
    GObject *session = NULL;
    if (rtpbin)
        g_signal_emit_by_name(rtpbin, "get-internal-session", 0u, &session);
    if (session) {
        s->rtp_session = session; /* our ref */
        /* rtpsession sizes its RTCP interval from the session bandwidth,
         * which nobody tells it (64 kbit/s assumed: about 270 ms here), and
         * allows one early packet (a NACK or PLI) per interval; the rest
         * wait for the next regular one.  At the real bandwidth the
         * interval is short, and so is a repair. */
        g_object_set(session, "bandwidth", (gdouble)s->room->cfg.max_kbps * 1000,
                     "rtcp-min-interval", (guint64)RTCP_MIN_INTERVAL_NS, NULL);
        g_signal_connect_data(session, "on-sending-rtcp", G_CALLBACK(on_publisher_rtcp),
                              session_ref(s), session_unref_closure, 0);
    } else {
        g_warning("session %s: no RTP session to send REMB on", s->id);
    }
    g_clear_object(&rtpbin);
}

static gboolean
publisher_connected_on_loop(gpointer data)
{
    Session *s = data;
    if (!s->closed && !s->rtcp_watched) {
        s->rtcp_watched = TRUE;
        watch_publisher_rtcp(s);
    }
    session_unref(s);
    return G_SOURCE_REMOVE;
}

static gboolean
connected_on_loop(gpointer data)
{
    Session *s = data;
    if (!s->closed) {
        if (!s->rtcp_watched) {
            s->rtcp_watched = TRUE;
            watch_subscriber_rtcp(s);
        }
        for (int k = 0; k < MEDIA_N_KINDS; k++)
            if (s->relay[k])
                g_atomic_int_set(&s->relay[k]->connected, 1);
    }
    session_unref(s);
    return G_SOURCE_REMOVE;
}

/* webrtcbin's thread: a connection (ICE + DTLS) is up.  A subscriber's
 * relays may send; a publisher's packets may skip the receive queue. */
static void
on_connection_state(GstElement *webrtc, GParamSpec *ps, gpointer data)
{
    Session *s = data;
    GstWebRTCPeerConnectionState st;
    g_object_get(webrtc, "connection-state", &st, NULL);
    if (st != GST_WEBRTC_PEER_CONNECTION_STATE_CONNECTED)
        return;
    if (!s->publish) {
        g_main_context_invoke(NULL, connected_on_loop, session_ref(s));
        return;
    }
    g_main_context_invoke(NULL, publisher_connected_on_loop, session_ref(s));
    if (g_atomic_int_compare_and_exchange(&s->queue_trimmed, 0, 1))
        media_trim_receive_queue(webrtc);
}

static void
configure_ice(MediaRoom *room, GstElement *webrtc)
{
    /* g_object_get() returns a reference of our own here (1.22.0, measured:
     * adding one more, as WEBRTC-NOTES suggests, leaks the agent with its
     * thread, main context and sockets, 8 fds per consultation). */
    GObject *ice = NULL;
    g_object_get(webrtc, "ice-agent", &ice, NULL);
    if (!ice)
        return;
    if (room->cfg.min_port && room->cfg.max_port)
        g_object_set(ice, "min-rtp-port", room->cfg.min_port, "max-rtp-port", room->cfg.max_port,
                     NULL);
    g_object_set(ice, "ice-tcp", FALSE, NULL);
    GObject *agent = NULL;
    g_object_get(ice, "agent", &agent, NULL);
    if (agent) {
        g_object_set(agent, "upnp", FALSE, NULL);
        g_object_unref(agent);
    }
    gboolean ok;
    for (guint i = 0; room->cfg.addresses && room->cfg.addresses[i]; i++)
        g_signal_emit_by_name(ice, "add-local-ip-address", room->cfg.addresses[i], &ok);
    if (room->cfg.loopback)
        g_signal_emit_by_name(ice, "add-local-ip-address", "127.0.0.1", &ok);
    g_object_unref(ice);
    if (room->cfg.stun && *room->cfg.stun)
        g_object_set(webrtc, "stun-server", room->cfg.stun, NULL);
}

static void
add_session_lost(const GValue *item, gpointer data)
{
    guint64 *lost = data;
    GstElement *e = g_value_get_object(item);
    if (strcmp(G_OBJECT_TYPE_NAME(e), "GstRtpSession"))
        return;
    GstStructure *st = NULL;
    g_object_get(e, "stats", &st, NULL);
    const GValue *v = st ? gst_structure_get_value(st, "source-stats") : NULL;
    G_GNUC_BEGIN_IGNORE_DEPRECATIONS
    GValueArray *srcs =
        v && G_VALUE_TYPE(v) == g_value_array_get_type() ? g_value_get_boxed(v) : NULL;
    guint n = srcs ? srcs->n_values : 0;
    const GValue *vals = srcs ? srcs->values : NULL;
    G_GNUC_END_IGNORE_DEPRECATIONS
    for (guint i = 0; i < n; i++) {
        const GValue *sv = &vals[i];
        const GstStructure *src =
            GST_VALUE_HOLDS_STRUCTURE(sv) ? gst_value_get_structure(sv) : NULL;
        gboolean internal = TRUE;
        gint n_lost = 0;
        if (src && gst_structure_get_boolean(src, "internal", &internal) && !internal &&
            gst_structure_get_int(src, "packets-lost", &n_lost))
            *lost += (guint64)MAX(n_lost, 0);
    }
    if (st)
        gst_structure_free(st);
}

/* Packets lost between a publisher and us, from the counters of the
 * rtpsessions in its webrtcbin's rtpbin (the number webrtcbin's get-stats
 * reports as inbound packets-lost).  Not from get-stats itself: it names
 * each of its structures after an SSRC or an ICE candidate, and GStreamer
 * keeps every structure name as a quark for the life of the process, so
 * asking every second grew the worker by about 1 KB per consultation,
 * for good (bench/leak.py, docs/benchmarks.md). */
static guint64
publisher_lost(GstElement *webrtc)
{
    guint64 lost = 0;
    GstElement *rtpbin = gst_bin_get_by_name(GST_BIN(webrtc), "rtpbin");
    if (!rtpbin)
        return 0;
    GstIterator *it = gst_bin_iterate_elements(GST_BIN(rtpbin));
    while (gst_iterator_foreach(it, add_session_lost, &lost) == GST_ITERATOR_RESYNC) {
        lost = 0;
        gst_iterator_resync(it);
    }
    gst_iterator_free(it);
    gst_object_unref(rtpbin);
    return lost;
}

static void
session_stop(Session *s)
{
    MediaRoom *room = s->room;
    if (s->closed)
        return;
    s->closed = TRUE;
    if (s->publish && s->answered) /* what was lost since the last reading too */
        s->lost = publisher_lost(s->webrtc);
    media_count_n(MEDIA_LOST_CLOSED, s->lost);
    for (int k = 0; k < MEDIA_N_KINDS; k++)
        g_clear_pointer(&s->relay[k], relay_free);
    /* Handlers hold session refs; dropping them breaks the cycle with our
     * own ref on the element, which stays valid for late promise callbacks. */
    g_signal_handlers_disconnect_by_data(s->webrtc, s);
    if (s->rtp_session) {
        g_signal_handlers_disconnect_by_data(s->rtp_session, s);
        g_clear_object(&s->rtp_session);
    }
    gst_element_set_state(s->webrtc, GST_STATE_NULL);
    if (s->rtcp_pad) { /* its thread is joined: no probe is running */
        gst_pad_remove_probe(s->rtcp_pad, s->rtcp_probe);
        g_clear_object(&s->rtcp_pad);
    }
    gst_bin_remove(GST_BIN(room->pipe), s->webrtc);
    if (s->publish && room->pub[s->src] == s) {
        room->pub[s->src] = NULL;
        recording_stop(room, s->src, NULL);
    }
    if (!s->publish && room->sub[s->src] == s)
        room->sub[s->src] = NULL;
}

gboolean
media_room_offer(MediaRoom *room, guint32 req, const char *session, ConsultdRole role,
                 ConsultdStream stream, gboolean publish, const char *sdp_text, GError **error)
{
    g_return_val_if_fail(role >= 0 && role < CONSULTD_N_ROLES, FALSE);
    g_return_val_if_fail(stream >= 0 && stream < CONSULTD_N_STREAMS, FALSE);
    /* What it publishes, or the other participant's source it receives. */
    int src = source_of(publish ? role : (ConsultdRole)(1 - role), stream);
    GstSDPMessage *sdp = NULL;
    if (gst_sdp_message_new_from_text(sdp_text, &sdp) != GST_SDP_OK ||
        gst_sdp_message_medias_len(sdp) == 0) {
        if (sdp)
            gst_sdp_message_free(sdp);
        g_set_error(error, MEDIA_ERROR, MEDIA_ERROR_BAD_OFFER, "the offer is not valid SDP");
        return FALSE;
    }
    MediaOfferTrack tracks[MEDIA_N_KINDS] = {{0}};
    if (!media_offer_inspect(sdp, tracks, error)) {
        gst_sdp_message_free(sdp);
        for (int k = 0; k < MEDIA_N_KINDS; k++)
            g_free(tracks[k].codec);
        return FALSE;
    }
    /* A new session of the same source and direction replaces the old one. */
    Session *old = publish ? room->pub[src] : room->sub[src];
    if (old)
        media_room_close_session(room, old->id);
    /* Its threads are joined: the next publisher's SSRC is learnt anew. */
    for (int k = 0; publish && k < MEDIA_N_KINDS; k++)
        __atomic_store_n(&room->fan[src][k].ssrc, 0, __ATOMIC_RELAXED);

    Session *s = g_atomic_rc_box_new0(Session);
    s->room = room;
    s->id = g_strdup(session);
    s->role = role;
    s->src = src;
    s->publish = publish;
    s->req = req;
    s->started_at = s->progress_at = g_get_monotonic_time();
    g_autofree char *name =
        g_strdup_printf("%s-%s-%s", publish ? "pub" : "sub", source_name(src), session);
    s->webrtc = gst_object_ref_sink(gst_element_factory_make("webrtcbin", name));
    g_object_set(s->webrtc, "bundle-policy", GST_WEBRTC_BUNDLE_POLICY_MAX_BUNDLE, "latency", 50,
                 NULL);
    configure_ice(room, s->webrtc);
    s->video_fb = tracks[MEDIA_KIND_VIDEO].fb;
    media_trim_rtpbin(s->webrtc, publish,
                      (s->video_fb & MEDIA_OFFER_FB_NACK) ? (int)tracks[MEDIA_KIND_VIDEO].pt : -1);
    gst_bin_add(GST_BIN(room->pipe), s->webrtc);
    if (publish)
        g_signal_connect_data(s->webrtc, "pad-added", G_CALLBACK(on_pad_added), session_ref(s),
                              session_unref_closure, 0);
    else
        g_signal_connect(s->webrtc, "deep-element-added", G_CALLBACK(on_subscriber_element), NULL);
    g_signal_connect_data(s->webrtc, "notify::ice-gathering-state", G_CALLBACK(on_gathering),
                          session_ref(s), session_unref_closure, 0);
    g_signal_connect_data(s->webrtc, "notify::connection-state", G_CALLBACK(on_connection_state),
                          session_ref(s), session_unref_closure, 0);
    for (int k = 0; k < MEDIA_N_KINDS; k++) {
        if (!tracks[k].present)
            continue;
        if (publish) {
            g_autoptr(GstCaps) caps = track_caps(k, &tracks[k], TRUE);
            GstWebRTCRTPTransceiver *t = NULL;
            g_signal_emit_by_name(s->webrtc, "add-transceiver",
                                  GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY, caps, &t);
            if (t)
                gst_object_unref(t);
        } else {
            s->relay[k] = relay_new(room, s, k, &tracks[k]);
        }
        g_free(tracks[k].codec);
    }
    gst_element_sync_state_with_parent(s->webrtc);
    g_hash_table_insert(room->sessions, g_strdup(session), s);
    if (publish)
        room->pub[src] = s;
    else
        room->sub[src] = s;

    GstWebRTCSessionDescription *offer =
        gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_OFFER, sdp);
    GstPromise *p = gst_promise_new_with_change_func(on_remote_set, session_ref(s),
                                                     (GDestroyNotify)session_unref);
    g_signal_emit_by_name(s->webrtc, "set-remote-description", offer, p);
    gst_webrtc_session_description_free(offer);
    g_info("room %" G_GINT64_FORMAT ": %s %s %s session %s", room->id, consultd_role_name(role),
           publish ? "publishes" : "receives", source_name(src), session);
    return TRUE;
}

gboolean
media_room_trickle(MediaRoom *room, const char *session, guint mline, const char *cand)
{
    Session *s = g_hash_table_lookup(room->sessions, session);
    if (!s || s->closed)
        return FALSE;
    g_signal_emit_by_name(s->webrtc, "add-ice-candidate", mline, cand);
    return TRUE;
}

gboolean
media_room_close_session(MediaRoom *room, const char *session)
{
    Session *s = g_hash_table_lookup(room->sessions, session);
    if (!s)
        return FALSE;
    session_stop(s);
    g_hash_table_remove(room->sessions, session); /* drops the table's ref */
    return TRUE;
}

guint
media_room_session_count(MediaRoom *room)
{
    return g_hash_table_size(room->sessions);
}

void
media_room_tick(MediaRoom *room)
{
    gint64 now = g_get_monotonic_time();
    gint64 timeout = (gint64)room->cfg.media_timeout_s * G_USEC_PER_SEC;
    g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func(g_free);
    GHashTableIter it;
    Session *s;
    g_hash_table_iter_init(&it, room->sessions);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&s)) {
        if (!s->publish || s->closed)
            continue;
        /* A reading costs about as much as relaying a packet (200 k
         * instructions): every 5 s, and once more when the session ends. */
        if (s->answered && s->ticks++ % 5 == 4)
            s->lost = publisher_lost(s->webrtc);
        gint n = g_atomic_int_get(&s->packets);
        if (n != s->last_packets) {
            s->last_packets = n;
            s->progress_at = now;
            if (!s->joined) {
                s->joined = TRUE;
                room->hooks.joined(room->hooks.data, room->id, s->role, source_stream(s->src),
                                   s->id);
                /* A subscriber waiting for this publisher wants a keyframe. */
                Session *sub = room->sub[s->src];
                for (int k = 0; sub && k < MEDIA_N_KINDS; k++)
                    if (sub->relay[k])
                        request_keyframe(sub->relay[k]);
            }
        } else if (now - s->progress_at > timeout) {
            g_ptr_array_add(gone, g_strdup(s->id));
        }
    }
    for (guint i = 0; i < gone->len; i++) {
        s = g_hash_table_lookup(room->sessions, gone->pdata[i]);
        room->hooks.left(room->hooks.data, room->id, s->role, source_stream(s->src), s->id,
                         s->joined ? "media-timeout" : "no-media");
        media_room_close_session(room, gone->pdata[i]);
    }
}

/* ------------------------------------------------------------------ room */

static gboolean
on_bus(GstBus *bus, GstMessage *msg, gpointer data)
{
    MediaRoom *room = data;
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
        g_autoptr(GError) err = NULL;
        g_autofree char *dbg = NULL;
        gst_message_parse_error(msg, &err, &dbg);
        /* Logged, never fatal: branches are isolated, and a session whose
         * webrtcbin failed is found by the liveness check. */
        g_warning("room %" G_GINT64_FORMAT ": %s: %s (%s)", room->id,
                  GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)), err->message, dbg ? dbg : "");
    } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_WARNING) {
        g_autoptr(GError) err = NULL;
        gst_message_parse_warning(msg, &err, NULL);
        g_debug("room %" G_GINT64_FORMAT ": %s: %s", room->id,
                GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)), err->message);
    }
    return G_SOURCE_CONTINUE;
}

static void
session_table_free(gpointer p)
{
    Session *s = p;
    session_stop(s);
    session_unref(s);
}

MediaRoom *
media_room_new(gint64 consultation, const MediaWorkerConfig *cfg, const MediaRoomHooks *hooks)
{
    MediaRoom *room = g_new0(MediaRoom, 1);
    room->id = consultation;
    room->cfg = *cfg;
    room->hooks = *hooks;
    room->sessions = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, session_table_free);
    g_autofree char *name = g_strdup_printf("consultation-%" G_GINT64_FORMAT, consultation);
    room->pipe = gst_pipeline_new(name);
    for (int r = 0; r < N_SOURCES; r++) {
        for (int k = 0; k < MEDIA_N_KINDS; k++) {
            g_autofree char *tn = g_strdup_printf("tee-%s-%s", source_name(r), kind_names[k]);
            room->tee[r][k] = gst_element_factory_make("tee", tn);
            g_object_set(room->tee[r][k], "allow-not-linked", TRUE, NULL);
            gst_bin_add(GST_BIN(room->pipe), room->tee[r][k]);
            Fanout *f = &room->fan[r][k];
            g_mutex_init(&f->lock);
            f->relays = g_ptr_array_new();
            f->tee_sink = gst_element_get_static_pad(room->tee[r][k], "sink");
            gst_pad_add_probe(f->tee_sink,
                              GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST, fan_out,
                              f, NULL);
        }
    }
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(room->pipe));
    room->bus_watch = gst_bus_add_watch(bus, on_bus, room);
    gst_object_unref(bus);
    gst_element_set_state(room->pipe, GST_STATE_PLAYING);
    return room;
}

void
media_room_free(MediaRoom *room)
{
    if (!room)
        return;
    /* Sessions first (each to NULL and out of the bin, which also stops its
     * recording: that goes on by itself and reports through a copy of the
     * hooks), then the pipeline. */
    g_hash_table_destroy(room->sessions);
    for (int r = 0; r < N_SOURCES; r++)
        recording_stop(room, r, NULL);
    gst_element_set_state(room->pipe, GST_STATE_NULL);
    g_source_remove(room->bus_watch);
    for (int r = 0; r < N_SOURCES; r++) {
        for (int k = 0; k < MEDIA_N_KINDS; k++) {
            Fanout *f = &room->fan[r][k];
            g_assert(f->relays->len == 0); /* every session is gone */
            g_ptr_array_unref(f->relays);
            gst_object_unref(f->tee_sink);
            g_mutex_clear(&f->lock);
        }
    }
    gst_object_unref(room->pipe);
    g_free(room);
}

guint64
media_packets_lost(GHashTable *rooms)
{
    guint64 n = media_counter(MEDIA_LOST_CLOSED);
    GHashTableIter it, si;
    MediaRoom *room;
    Session *s;
    g_hash_table_iter_init(&it, rooms);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&room)) {
        g_hash_table_iter_init(&si, room->sessions);
        while (g_hash_table_iter_next(&si, NULL, (gpointer *)&s))
            if (!s->closed)
                n += s->lost;
    }
    return n;
}

void
media_room_hold_recording(MediaRoom *room, const char *why)
{
    if (why && !room->held) {
        room->held = why;
        for (int r = 0; r < N_SOURCES; r++)
            recording_stop(room, r, why);
    } else if (!why && room->held) {
        room->held = NULL;
        /* Publishers still here go on in a new file of their series. */
        for (int r = 0; r < N_SOURCES; r++)
            if (room->pub[r] && room->pub[r]->answered && !room->pub[r]->closed)
                recording_start(room, r);
    }
}
