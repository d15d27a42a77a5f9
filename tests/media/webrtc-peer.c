/* webrtc-peer - a WHIP/WHEP test client built on GStreamer's webrtcbin.
 *
 *   webrtc-peer --url http://127.0.0.1:PORT/whip/consultations/7 --token T \
 *               --mode publish|receive --seconds 8 [--min-frames 30]
 *
 * publish: sends test video (VP8, or H.264 with --codec h264 if x264 exists)
 *          and Opus audio, or a pre-encoded WebM file (--file), over WHIP.
 * receive: offers recvonly video+audio over WHEP and decodes what arrives,
 *          counting decoded video frames and audio buffers.
 * Both add 127.0.0.1 as an ICE address (loopback tests) and, at the end,
 * DELETE their session.  One JSON line on stdout says what happened; the exit
 * status is 0 if the HTTP exchange worked and (receive) at least --min-frames
 * video frames were decoded.
 */
#define GST_USE_UNSTABLE_API
#include <glib-unix.h>
#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#include <gst/webrtc/webrtc.h>
#include <libsoup/soup.h>
#include <stdio.h>
#include <string.h>

static char *url, *token, *mode = "publish", *file;
static int redirects; /* 307/308 hops the POST followed */
static gboolean no_decode, wait_go;
static gint retry_busy; /* 503s tried again */
static int seconds = 8, min_frames = 1;
static GMainLoop *loop;
static GstElement *pipeline, *webrtc;
static SoupSession *soup;
static char *location, *etag;
static guint http_status;
static gint video_frames, audio_buffers;
static gint64 t_start;   /* monotonic us: the process's start, or the go line's arrival */
static char *offer_text; /* --wait-go: the offer made, waiting for its URL */
/* Where a join's time goes (ms from the start, -1: not reached): the offer
 * posted (gathering done), the answer back, ICE connected, the peer
 * connection connected (DTLS done), the first video packet, the first
 * video frame out of the decoder (the join). */
enum {
    MARK_OFFER,
    MARK_ANSWER,
    MARK_ICE,
    MARK_CONNECTED,
    MARK_RTP,
    MARK_FRAME,
    N_MARKS
};
static gint64 marks[N_MARKS];
static gint connected; /* the peer connection is up (DTLS done) */

static GMutex marks_lock; /* marks come from signal and streaming threads */

static void
mark(int which)
{
    g_mutex_lock(&marks_lock);
    if (!marks[which])
        marks[which] = g_get_monotonic_time();
    g_mutex_unlock(&marks_lock);
}

static GstPadProbeReturn
first_packet(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    mark(MARK_RTP);
    return GST_PAD_PROBE_REMOVE;
}

static void start_media(GstElement *w);

static void
on_state(GstElement *w, GParamSpec *ps, gpointer data)
{
    GstWebRTCICEConnectionState ice;
    GstWebRTCPeerConnectionState pc;
    g_object_get(w, "ice-connection-state", &ice, "connection-state", &pc, NULL);
    if (ice == GST_WEBRTC_ICE_CONNECTION_STATE_CONNECTED ||
        ice == GST_WEBRTC_ICE_CONNECTION_STATE_COMPLETED)
        mark(MARK_ICE);
    if (pc == GST_WEBRTC_PEER_CONNECTION_STATE_CONNECTED) {
        mark(MARK_CONNECTED);
        if (!g_atomic_int_get(&connected) && wait_go)
            start_media(w);
    }
}

/* --wait-go: a publisher made long before its connection drops its media
 * until the connection is up, as a camera's frames are dropped: webrtcbin
 * would hold it back, and everything held back would then leave at once (a
 * burst the server relays, then a gap: a freeze at the receiver, and more
 * packets than real time under load).  A keyframe asked for meanwhile was
 * dropped too: the encoder is asked for one when the media starts. */
static GstPadProbeReturn
drop_until_connected(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    return g_atomic_int_get(&connected) ? GST_PAD_PROBE_OK : GST_PAD_PROBE_DROP;
}

/* Calls FN on each pad that feeds one of webrtcbin's sink pads. */
static void
for_each_feeding_pad(GstElement *w, void (*fn)(GstPad *pad))
{
    GstIterator *it = gst_element_iterate_sink_pads(w);
    GValue v = G_VALUE_INIT;
    while (gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
        GstPad *peer = gst_pad_get_peer(g_value_get_object(&v));
        if (peer) {
            fn(peer);
            gst_object_unref(peer);
        }
        g_value_reset(&v);
    }
    g_value_unset(&v);
    gst_iterator_free(it);
}

static void
ask_keyframe(GstPad *pad)
{
    GstStructure *st =
        gst_structure_new("GstForceKeyUnit", "all-headers", G_TYPE_BOOLEAN, TRUE, NULL);
    gst_pad_send_event(pad, gst_event_new_custom(GST_EVENT_CUSTOM_UPSTREAM, st));
}

static void
add_drop_probe(GstPad *pad)
{
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST,
                      drop_until_connected, NULL, NULL);
}

/* --drop-every N: a publisher on a lossy link.  Every Nth RTP packet is
 * dropped before webrtcbin sends it, after the payloader numbered it, so
 * the server sees gaps in the sequence numbers and counts them lost. */
static gint drop_every;

static gboolean
drop_now(guint *n)
{
    return ++*n % (guint)drop_every == 0;
}

static GstPadProbeReturn
drop_some(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    guint *n = data;
    if (!(GST_PAD_PROBE_INFO_TYPE(info) & GST_PAD_PROBE_TYPE_BUFFER_LIST))
        return drop_now(n) ? GST_PAD_PROBE_DROP : GST_PAD_PROBE_OK;
    GstBufferList *l = gst_buffer_list_make_writable(GST_PAD_PROBE_INFO_BUFFER_LIST(info));
    for (guint i = 0; i < gst_buffer_list_length(l);) {
        if (drop_now(n))
            gst_buffer_list_remove(l, i, 1);
        else
            i++;
    }
    GST_PAD_PROBE_INFO_DATA(info) = l;
    return gst_buffer_list_length(l) ? GST_PAD_PROBE_OK : GST_PAD_PROBE_DROP;
}

static void
add_loss_probe(GstPad *pad)
{
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST, drop_some,
                      g_new0(guint, 1), g_free);
}

static void
start_media(GstElement *w)
{
    g_atomic_int_set(&connected, 1);
    for_each_feeding_pad(w, ask_keyframe);
}

static gint64 packets_lost, packets_received;
static double jitter_max;
static gboolean failed;
static char *why;

static void
fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_free(why);
    why = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    failed = TRUE;
    g_main_loop_quit(loop);
}

static gboolean
post_offer(gpointer data)
{
    char *sdp = data;
    mark(MARK_OFFER);
    g_autoptr(GBytes) body = g_bytes_new_take(sdp, strlen(sdp));
    g_autofree char *auth = g_strdup_printf("Bearer %s", token);
    g_autoptr(GError) err = NULL;
    g_autoptr(GBytes) reply = NULL;
    SoupMessage *msg = NULL;
    /* RFC 9725 section 4.5: a 307 or 308 sends the offer elsewhere (the
     * node that owns the consultation); libsoup does not redirect a POST
     * by itself.  A few hops at most. */
    g_autoptr(GUri) target = g_uri_parse(url, G_URI_FLAGS_NONE, NULL);
    for (int hop = 0, busy = 0; target && hop < 4; hop++) {
        g_clear_object(&msg);
        g_clear_pointer(&reply, g_bytes_unref);
        msg = soup_message_new_from_uri("POST", target);
        SoupMessageHeaders *h = soup_message_get_request_headers(msg);
        soup_message_headers_replace(h, "Authorization", auth);
        soup_message_set_request_body_from_bytes(msg, "application/sdp", body);
        soup_message_add_flags(msg, SOUP_MESSAGE_NO_REDIRECT);
        reply = soup_session_send_and_read(soup, msg, NULL, &err);
        http_status = soup_message_get_status(msg);
        SoupMessageHeaders *rh = soup_message_get_response_headers(msg);
        /* --retry-busy: a 503 is tried again after its Retry-After, as a
         * page does (the server refuses offers over what a worker takes
         * at once). */
        if (reply && http_status == 503 && busy < retry_busy) {
            const char *ra = soup_message_headers_get_one(rh, "Retry-After");
            guint64 wait = ra ? g_ascii_strtoull(ra, NULL, 10) : 1;
            g_usleep(MIN(MAX(wait, 1), 10) * G_USEC_PER_SEC);
            busy++;
            hop--;
            continue;
        }
        const char *to = soup_message_headers_get_one(rh, "Location");
        if (!reply || (http_status != 307 && http_status != 308) || !to)
            break;
        GUri *next = g_uri_parse_relative(target, to, G_URI_FLAGS_NONE, NULL);
        g_uri_unref(target);
        target = next;
        redirects++;
    }
    mark(MARK_ANSWER);
    if (!reply || http_status != 201) {
        fail("POST answered %u: %.*s", http_status, reply ? (int)g_bytes_get_size(reply) : 0,
             reply ? (const char *)g_bytes_get_data(reply, NULL) : "");
        g_object_unref(msg);
        return G_SOURCE_REMOVE;
    }
    SoupMessageHeaders *rh = soup_message_get_response_headers(msg);
    location = g_strdup(soup_message_headers_get_one(rh, "Location"));
    etag = g_strdup(soup_message_headers_get_one(rh, "ETag"));
    g_autofree char *text = g_strndup(g_bytes_get_data(reply, NULL), g_bytes_get_size(reply));
    if (g_getenv("PEER_DEBUG"))
        g_printerr("answer:\n%s\n", text);
    GstSDPMessage *sdpm;
    if (gst_sdp_message_new_from_text(text, &sdpm) != GST_SDP_OK) {
        fail("the answer is not SDP");
        g_object_unref(msg);
        return G_SOURCE_REMOVE;
    }
    GstWebRTCSessionDescription *answer =
        gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_ANSWER, sdpm);
    g_signal_emit_by_name(webrtc, "set-remote-description", answer, NULL);
    gst_webrtc_session_description_free(answer);
    g_object_unref(msg);
    return G_SOURCE_REMOVE;
}

static gboolean done(gpointer data);

/* Main loop: the offer is made and its candidates gathered. */
static gboolean
offer_ready(gpointer data)
{
    if (!wait_go)
        return post_offer(data);
    offer_text = data;
    printf("ready\n");
    fflush(stdout);
    return G_SOURCE_REMOVE;
}

/* --wait-go: a line "URL TOKEN" on stdin, once the request has been made,
 * starts the clock and posts the offer made beforehand (a browser's page
 * has its peer connection and its DTLS certificate before it asks). */
static gboolean
on_stdin(GIOChannel *ch, GIOCondition cond, gpointer data)
{
    g_autofree char *line = NULL;
    if (g_io_channel_read_line(ch, &line, NULL, NULL, NULL) != G_IO_STATUS_NORMAL || !line) {
        fail("stdin closed before the go line");
        return G_SOURCE_REMOVE;
    }
    g_auto(GStrv) f = g_strsplit(g_strstrip(line), " ", 2);
    if (!f[0] || !f[1] || !offer_text) {
        fail(offer_text ? "the go line is not \"URL TOKEN\"" : "go before ready");
        return G_SOURCE_REMOVE;
    }
    url = g_strdup(f[0]);
    token = g_strdup(f[1]);
    t_start = g_get_monotonic_time(); /* nothing is marked before the offer is posted */
    g_timeout_add_seconds(seconds, done, NULL);
    post_offer(offer_text);
    offer_text = NULL;
    return G_SOURCE_REMOVE;
}

static void
on_gathering(GstElement *w, GParamSpec *ps, gpointer data)
{
    GstWebRTCICEGatheringState st;
    g_object_get(w, "ice-gathering-state", &st, NULL);
    if (st != GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE)
        return;
    GstWebRTCSessionDescription *local = NULL;
    g_object_get(w, "local-description", &local, NULL);
    if (!local)
        return;
    char *text = gst_sdp_message_as_text(local->sdp);
    gst_webrtc_session_description_free(local);
    g_main_context_invoke(NULL, offer_ready, text);
}

static void
on_offer(GstPromise *p, gpointer data)
{
    const GstStructure *r = gst_promise_get_reply(p);
    GstWebRTCSessionDescription *offer = NULL;
    if (r)
        gst_structure_get(r, "offer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &offer, NULL);
    gst_promise_unref(p);
    if (!offer) {
        g_printerr("webrtc-peer: no offer\n");
        return;
    }
    g_signal_emit_by_name(webrtc, "set-local-description", offer, NULL);
    gst_webrtc_session_description_free(offer);
}

static void
on_negotiation_needed(GstElement *w, gpointer data)
{
    static gboolean done;
    if (done)
        return;
    done = TRUE;
    g_signal_emit_by_name(w, "create-offer", NULL,
                          gst_promise_new_with_change_func(on_offer, NULL, NULL));
}

/* Freezes, as webrtc-stats counts them (freezeCount,
 * totalFreezesDuration): a gap between two frames of at least
 * max(3 x avg, avg + 150 ms), avg being the mean of the last 30 gaps.
 * Only the video streaming thread writes these; main() reads them after
 * the pipeline has stopped. */
#define FREEZE_WINDOW 30
static gint64 last_frame_us, gaps[FREEZE_WINDOW], gap_sum;
static guint n_gaps;
static gint freezes;
static gint64 freeze_us;
#define FREEZE_LIST 64
static gint64 freeze_end[FREEZE_LIST], freeze_len[FREEZE_LIST]; /* the first 64 */

static void
video_frame(gint64 now)
{
    if (last_frame_us) {
        gint64 gap = now - last_frame_us;
        if (n_gaps >= FREEZE_WINDOW) {
            gint64 avg = gap_sum / FREEZE_WINDOW;
            if (gap >= MAX(3 * avg, avg + 150000)) {
                if (freezes < FREEZE_LIST) {
                    freeze_end[freezes] = now;
                    freeze_len[freezes] = gap;
                }
                freezes++;
                freeze_us += gap;
            }
            gap_sum -= gaps[n_gaps % FREEZE_WINDOW];
        }
        gaps[n_gaps % FREEZE_WINDOW] = gap;
        gap_sum += gap;
        n_gaps++;
    }
    last_frame_us = now;
}

static GstPadProbeReturn
count_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    if (g_atomic_int_add((gint *)data, 1) == 0 && data == &video_frames) {
        mark(MARK_FRAME);
        printf("joined\n"); /* for a load test waiting for everyone */
        fflush(stdout);
    }
    if (data == &video_frames)
        video_frame(g_get_monotonic_time());
    return GST_PAD_PROBE_OK;
}

static gboolean
stat_field(GQuark id, const GValue *v, gpointer data)
{
    if (!GST_VALUE_HOLDS_STRUCTURE(v))
        return TRUE;
    const GstStructure *s = gst_value_get_structure(v);
    GstWebRTCStatsType type;
    if (!gst_structure_get(s, "type", GST_TYPE_WEBRTC_STATS_TYPE, &type, NULL) ||
        type != GST_WEBRTC_STATS_INBOUND_RTP)
        return TRUE;
    gint64 lost = 0;
    guint64 recv = 0;
    double jitter = 0;
    gst_structure_get_int64(s, "packets-lost", &lost);
    gst_structure_get_uint64(s, "packets-received", &recv);
    gst_structure_get_double(s, "jitter", &jitter);
    packets_lost += MAX(lost, 0);
    packets_received += (gint64)recv;
    jitter_max = MAX(jitter_max, jitter);
    return TRUE;
}

/* Loss and jitter of what we received, from webrtcbin's own statistics. */
static void
collect_stats(void)
{
    GstPromise *p = gst_promise_new();
    g_signal_emit_by_name(webrtc, "get-stats", NULL, p);
    if (gst_promise_wait(p) == GST_PROMISE_RESULT_REPLIED) {
        const GstStructure *r = gst_promise_get_reply(p);
        if (r)
            gst_structure_foreach(r, stat_field, NULL);
    }
    gst_promise_unref(p);
}

static void
on_pad_added(GstElement *w, GstPad *pad, gpointer data)
{
    if (GST_PAD_DIRECTION(pad) != GST_PAD_SRC)
        return;
    g_autoptr(GstCaps) caps = gst_pad_get_current_caps(pad);
    const GstStructure *s = gst_caps_get_structure(caps, 0);
    const char *media = gst_structure_get_string(s, "media");
    const char *enc = gst_structure_get_string(s, "encoding-name");
    const char *desc;
    gint *counter;
    if (!g_strcmp0(media, "video")) {
        gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, first_packet, NULL, NULL);
        desc = !g_strcmp0(enc, "H264") ? "rtph264depay ! avdec_h264 ! fakesink sync=false"
               : no_decode             ? "rtpvp8depay wait-for-keyframe=true ! fakesink sync=false"
                                       : "rtpvp8depay ! vp8dec ! fakesink sync=false";
        counter = &video_frames;
    } else {
        desc = no_decode ? "rtpopusdepay ! fakesink sync=false"
                         : "rtpopusdepay ! opusdec ! fakesink sync=false";
        counter = &audio_buffers;
    }
    g_autoptr(GError) err = NULL;
    GstElement *bin = gst_parse_bin_from_description(desc, TRUE, &err);
    if (!bin) {
        g_printerr("webrtc-peer: %s\n", err->message);
        return;
    }
    gst_bin_add(GST_BIN(pipeline), bin);
    gst_element_sync_state_with_parent(bin);
    GstPad *sink = gst_element_get_static_pad(bin, "sink");
    gst_pad_link(pad, sink);
    gst_object_unref(sink);
    /* Count what the decoder produces: the last element's sink pad. */
    GstIterator *it = gst_bin_iterate_sinks(GST_BIN(bin));
    GValue v = G_VALUE_INIT;
    if (gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
        GstPad *fp = gst_element_get_static_pad(g_value_get_object(&v), "sink");
        gst_pad_add_probe(fp, GST_PAD_PROBE_TYPE_BUFFER, count_probe, counter, NULL);
        gst_object_unref(fp);
        g_value_unset(&v);
    }
    gst_iterator_free(it);
}

static void
configure_ice(GstElement *w)
{
    GObject *ice = NULL;
    g_object_get(w, "ice-agent", &ice, NULL);
    GObject *agent = NULL;
    g_object_get(ice, "agent", &agent, NULL);
    g_object_set(agent, "upnp", FALSE, NULL);
    g_object_unref(agent);
    g_object_set(ice, "ice-tcp", FALSE, NULL);
    gboolean ok;
    g_signal_emit_by_name(ice, "add-local-ip-address", "127.0.0.1", &ok);
    g_object_unref(ice);
}

static gboolean
on_bus(GstBus *bus, GstMessage *msg, gpointer data)
{
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
        g_autoptr(GError) err = NULL;
        gst_message_parse_error(msg, &err, NULL);
        fail("%s: %s", GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)), err->message);
    } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS && file) {
        /* A pre-encoded file ended: loop it by seeking to the start. */
        gst_element_seek_simple(pipeline, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH, 0);
    }
    return G_SOURCE_CONTINUE;
}

static gboolean
done(gpointer data)
{
    g_main_loop_quit(loop);
    return G_SOURCE_REMOVE;
}

/* SIGTERM or SIGINT: end as if --seconds had passed (report, DELETE). */
static gboolean
on_signal(gpointer data)
{
    g_main_loop_quit(loop);
    return G_SOURCE_CONTINUE;
}

static void
delete_session(void)
{
    if (!location)
        return;
    SoupMessage *msg = soup_message_new("DELETE", location);
    if (!msg)
        return;
    SoupMessageHeaders *h = soup_message_get_request_headers(msg);
    g_autofree char *auth = g_strdup_printf("Bearer %s", token);
    soup_message_headers_replace(h, "Authorization", auth);
    if (etag)
        soup_message_headers_replace(h, "If-Match", etag);
    g_autoptr(GBytes) b = soup_session_send_and_read(soup, msg, NULL, NULL);
    guint st = soup_message_get_status(msg);
    if (st != 200)
        g_printerr("webrtc-peer: DELETE answered %u\n", st);
    g_object_unref(msg);
}

int
main(int argc, char **argv)
{
    t_start = g_get_monotonic_time(); /* the process's start-up is part of a join */
    g_autofree char *codec = NULL;
    gint latency = -1;
    GOptionEntry entries[] = {
        {"url", 0, 0, G_OPTION_ARG_STRING, &url, "WHIP or WHEP endpoint", "URL"},
        {"token", 0, 0, G_OPTION_ARG_STRING, &token, "bearer token", "T"},
        {"mode", 0, 0, G_OPTION_ARG_STRING, &mode, "publish or receive", "M"},
        {"seconds", 0, 0, G_OPTION_ARG_INT, &seconds, "how long to run", "S"},
        {"min-frames", 0, 0, G_OPTION_ARG_INT, &min_frames, "receive: success threshold", "N"},
        {"codec", 0, 0, G_OPTION_ARG_STRING, &codec, "publish: vp8 (default) or h264", "C"},
        {"file", 0, 0, G_OPTION_ARG_FILENAME, &file, "publish: a VP8+Opus WebM file", "F"},
        {"no-decode", 0, 0, G_OPTION_ARG_NONE, &no_decode,
         "receive: depayload only (count frames without decoding; for load tests)", NULL},
        {"latency", 0, 0, G_OPTION_ARG_INT, &latency,
         "receive: jitterbuffer latency in ms (webrtcbin's default: 200)", "MS"},
        {"drop-every", 0, 0, G_OPTION_ARG_INT, &drop_every,
         "publish: drop every Nth RTP packet before sending it (a lossy link)", "N"},
        {"retry-busy", 0, 0, G_OPTION_ARG_INT, &retry_busy,
         "try a POST answered 503 again after its Retry-After, up to N times", "N"},
        {"wait-go", 0, 0, G_OPTION_ARG_NONE, &wait_go,
         "make the offer, print \"ready\", then wait for \"URL TOKEN\" on stdin; times count "
         "from that line (for load tests: the peer's start-up is not the server's)",
         NULL},
        G_OPTION_ENTRY_NULL};
    g_autoptr(GOptionContext) ctx = g_option_context_new("");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_add_group(ctx, gst_init_get_option_group());
    g_autoptr(GError) err = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &err) || (!wait_go && (!url || !token))) {
        g_printerr("webrtc-peer: %s\n",
                   err ? err->message : "--url and --token (or --wait-go) are required");
        return 2;
    }
    gboolean publish = !strcmp(mode, "publish");
    const char *desc;
    g_autofree char *fdesc = NULL;
    if (publish && file) {
        fdesc = g_strdup_printf("webrtcbin name=w bundle-policy=max-bundle "
                                "filesrc location=%s ! matroskademux name=d "
                                "d.video_0 ! queue ! clocksync ! rtpvp8pay pt=96 ! "
                                "application/x-rtp,media=video,encoding-name=VP8,payload=96 ! w. "
                                "d.audio_0 ! queue ! clocksync ! rtpopuspay pt=111 ! "
                                "application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! w.",
                                file);
        desc = fdesc;
    } else if (publish && codec && !strcmp(codec, "h264")) {
        desc =
            "webrtcbin name=w bundle-policy=max-bundle "
            "videotestsrc is-live=true pattern=ball ! "
            "video/x-raw,width=320,height=240,framerate=15/1 ! "
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! "
            "video/x-h264,profile=constrained-baseline ! rtph264pay pt=102 config-interval=-1 ! "
            "application/x-rtp,media=video,encoding-name=H264,payload=102 ! w. "
            "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! "
            "rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! w.";
    } else if (publish) {
        desc =
            "webrtcbin name=w bundle-policy=max-bundle "
            "videotestsrc is-live=true pattern=ball ! "
            "video/x-raw,width=320,height=240,framerate=15/1 ! "
            "vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay pt=96 ! "
            "application/x-rtp,media=video,encoding-name=VP8,payload=96 ! w. "
            "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! "
            "rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! w.";
    } else {
        desc = "webrtcbin name=w bundle-policy=max-bundle";
    }
    pipeline = gst_parse_launch(desc, &err);
    if (!pipeline) {
        g_printerr("webrtc-peer: %s\n", err->message);
        return 2;
    }
    if (!GST_IS_PIPELINE(pipeline)) {
        /* A lone element comes back as itself: put it in a pipeline. */
        GstElement *only = pipeline;
        pipeline = gst_pipeline_new(NULL);
        gst_bin_add(GST_BIN(pipeline), only);
    }
    webrtc = gst_bin_get_by_name(GST_BIN(pipeline), "w");
    configure_ice(webrtc);
    if (publish && wait_go)
        for_each_feeding_pad(webrtc, add_drop_probe);
    if (publish && drop_every > 0)
        for_each_feeding_pad(webrtc, add_loss_probe);
    if (latency >= 0)
        g_object_set(webrtc, "latency", (guint)latency, NULL);
    soup = soup_session_new_with_options("timeout", 30, NULL);
    loop = g_main_loop_new(NULL, FALSE);
    g_signal_connect(webrtc, "notify::ice-gathering-state", G_CALLBACK(on_gathering), NULL);
    g_signal_connect(webrtc, "on-negotiation-needed", G_CALLBACK(on_negotiation_needed), NULL);
    g_signal_connect(webrtc, "pad-added", G_CALLBACK(on_pad_added), NULL);
    g_signal_connect(webrtc, "notify::ice-connection-state", G_CALLBACK(on_state), NULL);
    g_signal_connect(webrtc, "notify::connection-state", G_CALLBACK(on_state), NULL);
    if (!publish) {
        const char *caps[] = {
            "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
            "application/"
            "x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=("
            "string)2"};
        for (guint i = 0; i < 2; i++) {
            GstCaps *c = gst_caps_from_string(caps[i]);
            GstWebRTCRTPTransceiver *t = NULL;
            g_signal_emit_by_name(webrtc, "add-transceiver",
                                  GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_RECVONLY, c, &t);
            gst_caps_unref(c);
            gst_object_unref(t);
        }
    }
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(pipeline));
    gst_bus_add_watch(bus, on_bus, NULL);
    gst_object_unref(bus);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    if (publish) {
        /* Send only: the transceivers made for our sink pads. */
        GArray *ts = NULL;
        g_signal_emit_by_name(webrtc, "get-transceivers", &ts);
        for (guint i = 0; ts && i < ts->len; i++)
            g_object_set(g_array_index(ts, GstWebRTCRTPTransceiver *, i), "direction",
                         GST_WEBRTC_RTP_TRANSCEIVER_DIRECTION_SENDONLY, NULL);
        if (ts)
            g_array_unref(ts);
    }
    if (wait_go) {
        GIOChannel *in = g_io_channel_unix_new(0);
        g_io_add_watch(in, G_IO_IN | G_IO_HUP | G_IO_ERR, on_stdin, NULL);
        g_io_channel_unref(in);
    } else {
        g_timeout_add_seconds(seconds, done, NULL);
    }
    g_unix_signal_add(SIGTERM, on_signal, NULL);
    g_unix_signal_add(SIGINT, on_signal, NULL);
    g_main_loop_run(loop);
    if (!publish)
        collect_stats();
    delete_session();
    gst_element_set_state(pipeline, GST_STATE_NULL);
    int v = g_atomic_int_get(&video_frames), a = g_atomic_int_get(&audio_buffers);
    g_autofree char *why_json = g_strescape(why ? why : "", NULL);
    gint64 ms[N_MARKS];
    for (int i = 0; i < N_MARKS; i++)
        ms[i] = marks[i] ? (marks[i] - t_start) / 1000 : -1;
    printf("{\"timeline_ms\":{\"offer\":%" G_GINT64_FORMAT ",\"answer\":%" G_GINT64_FORMAT
           ",\"ice\":%" G_GINT64_FORMAT ",\"connected\":%" G_GINT64_FORMAT
           ",\"rtp\":%" G_GINT64_FORMAT "},",
           ms[MARK_OFFER], ms[MARK_ANSWER], ms[MARK_ICE], ms[MARK_CONNECTED], ms[MARK_RTP]);
    printf("\"redirects\":%d,", redirects);
    printf("\"mode\":\"%s\",\"status\":%u,\"location\":\"%s\",\"video_frames\":%d,"
           "\"audio_buffers\":%d,\"first_frame_ms\":%" G_GINT64_FORMAT ","
           "\"packets_received\":%" G_GINT64_FORMAT ",\"packets_lost\":%" G_GINT64_FORMAT ","
           "\"jitter_max\":%.4f,\"freezes\":%d,\"freeze_ms\":%" G_GINT64_FORMAT ",",
           mode, http_status, location ? location : "", v, a, ms[MARK_FRAME], packets_received,
           packets_lost, jitter_max, freezes, freeze_us / 1000);
    /* When each freeze ended (ms from the start) and how long it was. */
    printf("\"freeze_list\":[");
    for (int i = 0; i < MIN(freezes, FREEZE_LIST); i++)
        printf("%s[%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT "]", i ? "," : "",
               (freeze_end[i] - t_start) / 1000, freeze_len[i] / 1000);
    printf("],\"error\":\"%s\"}\n", why_json);
    gst_object_unref(webrtc);
    gst_object_unref(pipeline);
    g_object_unref(soup);
    if (failed || http_status != 201)
        return 1;
    return publish || v >= min_frames ? 0 : 1;
}
