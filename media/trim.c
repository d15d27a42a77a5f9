/* trim.c - see trim.h.
 *
 * Everything here rewires webrtcbin 1.22's internals from outside, so
 * each function first checks that it finds the structure it expects and
 * otherwise leaves webrtcbin as it is, with a warning starting "trim:"
 * (which the tests look for): a newer webrtcbin then costs more CPU, never
 * a broken consultation.
 */
#include "trim.h"

#include "readers.h"

#include "rtppass.h"

#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>
#include <nice/agent.h>

/* ------------------------------------------------------------ helpers */

static gboolean
is_factory(GstElement *e, const char *name)
{
    GstElementFactory *f = e ? gst_element_get_factory(e) : NULL;
    return f && !g_strcmp0(GST_OBJECT_NAME(f), name);
}

/* UP -> A ... B -> DOWN becomes UP -> DOWN.  The pads were negotiated and
 * carry the same data, so nothing is checked (not even the hierarchy: UP
 * and DOWN may sit in different bins).  Only while no data passes, i.e.
 * from the one thread that pushes out of UP, between two pushes.  FALSE,
 * with the links as they were, if that cannot be done. */
static gboolean
bridge(GstPad *up, GstPad *a, GstPad *b, GstPad *down)
{
    gboolean ok = FALSE;
    if (up && a && b && down && gst_pad_unlink(up, a)) {
        gst_pad_unlink(b, down);
        ok = gst_pad_link_full(up, down, GST_PAD_LINK_CHECK_NOTHING) == GST_PAD_LINK_OK;
        if (!ok) {
            gst_pad_link_full(b, down, GST_PAD_LINK_CHECK_NOTHING);
            gst_pad_link_full(up, a, GST_PAD_LINK_CHECK_NOTHING);
        }
    }
    return ok;
}

/* Takes E (one sink pad, one source pad, both linked) out of its chain: its
 * upstream peer is linked to its downstream peer (bridge()). */
static gboolean
splice_out(GstElement *e)
{
    GstPad *sink = gst_element_get_static_pad(e, "sink");
    GstPad *src = gst_element_get_static_pad(e, "src");
    GstPad *up = sink ? gst_pad_get_peer(sink) : NULL;
    GstPad *down = src ? gst_pad_get_peer(src) : NULL;
    gboolean ok = bridge(up, sink, src, down);
    g_clear_object(&down);
    g_clear_object(&up);
    g_clear_object(&src);
    g_clear_object(&sink);
    return ok;
}

/* The first pad past the ghost pads that data pushed out of SRC goes
 * through: a sink ghost pad leads to its target, the inside of a source
 * ghost pad to the ghost pad's peer.  A new ref, or NULL. */
static GstPad *
past_ghosts(GstPad *src)
{
    GstPad *x = gst_pad_get_peer(src);
    while (x && GST_IS_PROXY_PAD(x)) {
        GstPad *next = NULL;
        if (GST_IS_GHOST_PAD(x)) {
            next = gst_ghost_pad_get_target(GST_GHOST_PAD(x));
        } else {
            GstProxyPad *ghost = gst_proxy_pad_get_internal(GST_PROXY_PAD(x));
            if (ghost) {
                next = gst_pad_get_peer(GST_PAD(ghost));
                gst_object_unref(ghost);
            }
        }
        gst_object_unref(x);
        x = next;
    }
    return x;
}

gboolean
media_trim_skip_ghosts(GstPad *src)
{
    GstPad *first = gst_pad_get_peer(src);
    GstPad *end = first && GST_IS_PROXY_PAD(first) ? past_ghosts(src) : NULL;
    GstPad *last = end ? gst_pad_get_peer(end) : NULL; /* inside the last ghost pad */
    gboolean ok = bridge(src, first, last, end);
    g_clear_object(&last);
    g_clear_object(&end);
    g_clear_object(&first);
    return ok;
}

typedef struct {
    const char *factory, *parent_factory, *parent_type;
} ElementMatch;

static gint
element_mismatch(gconstpointer value, gconstpointer data)
{
    const ElementMatch *m = data;
    GstElement *e = g_value_get_object(value);
    GstObject *parent = gst_object_get_parent(GST_OBJECT(e));
    gboolean yes = is_factory(e, m->factory) && parent && GST_IS_ELEMENT(parent) &&
                   (m->parent_factory ? is_factory(GST_ELEMENT(parent), m->parent_factory)
                                      : !g_strcmp0(G_OBJECT_TYPE_NAME(parent), m->parent_type));
    if (parent)
        gst_object_unref(parent);
    return yes ? 0 : 1;
}

/* The first element in WEBRTC, at any depth, made by FACTORY whose parent
 * is made by PARENT_FACTORY (or, if that is NULL, is of type PARENT_TYPE);
 * a new ref or NULL. */
static GstElement *
find_element(GstElement *webrtc, const char *factory, const char *parent_factory,
             const char *parent_type)
{
    ElementMatch m = {factory, parent_factory, parent_type};
    GstIterator *it = gst_bin_iterate_recurse(GST_BIN(webrtc));
    GValue v = G_VALUE_INIT;
    GstElement *found = NULL;
    /* find_custom starts again by itself when the bin changes meanwhile */
    if (gst_iterator_find_custom(it, element_mismatch, &v, &m)) {
        found = g_value_dup_object(&v);
        g_value_unset(&v);
    }
    gst_iterator_free(it);
    return found;
}

GstElement *
media_webrtc_find(GstElement *webrtc, const char *factory, const char *parent_factory)
{
    return find_element(webrtc, factory, parent_factory, NULL);
}

/* ------------------------------------------------------------ rtpbin */

static GstElement *
request_jitterbuffer(GstElement *rtpbin, guint session, gpointer data)
{
    return media_rtp_pass_new(GPOINTER_TO_INT(data));
}

static void
no_storage(GstElement *rtpbin, GstElement *storage, guint session, gpointer data)
{
    g_object_set(storage, "size-time", (guint64)0, NULL);
}

/* Publishers: no jitterbuffer; packets go to the tees in the thread that
 * received them (rtppass.h says why and what it saves).
 *
 * Everyone: webrtcbin 1.22 puts an rtprtxsend on every sending session, an
 * rtprtxreceive and an rtpreddec on every receiving one, an rtpulpfecdec
 * per received stream, and tells rtpbin's rtpstorage to keep 100 ms of
 * every received packet for that decoder.  Blocking webrtcbin's handlers
 * of those rtpbin signals leaves rtpbin's default (no element); the
 * storage keeps nothing.  Four elements and a copy into the storage fewer
 * per packet: about 10 % of the worker's CPU. */
void
media_trim_rtpbin(GstElement *webrtc, gboolean publish, int nack_pt)
{
    GstElement *rtpbin = gst_bin_get_by_name(GST_BIN(webrtc), "rtpbin");
    if (!rtpbin) {
        g_warning("trim: webrtcbin has no child named rtpbin; keeping all its elements");
        return;
    }
    if (publish)
        g_signal_connect(rtpbin, "request-jitterbuffer", G_CALLBACK(request_jitterbuffer),
                         GINT_TO_POINTER(nack_pt));
    static const char *const unused[] = {"request-aux-sender", "request-aux-receiver",
                                         "request-fec-decoder-full"};
    for (guint i = 0; i < G_N_ELEMENTS(unused); i++) {
        guint id = g_signal_lookup(unused[i], G_OBJECT_TYPE(rtpbin));
        if (id && !g_signal_handlers_block_matched(rtpbin, G_SIGNAL_MATCH_ID | G_SIGNAL_MATCH_DATA,
                                                   id, 0, NULL, NULL, webrtc))
            g_warning("trim: webrtcbin does not handle rtpbin's %s any more", unused[i]);
    }
    g_signal_connect_after(rtpbin, "new-storage", G_CALLBACK(no_storage), NULL);
    gst_object_unref(rtpbin);
}

/* ------------------------------------------------------------ receive queue */

/* webrtcbin's transport receive bin is
 *
 *   nicesrc -> capsfilter -> queue -> dtlssrtpdec -> ... rtpbin(rtpsession
 *     -> rtpstorage -> rtpssrcdemux ...)
 *
 * and the queue's thread carried every received packet through SRTP,
 * rtpbin, our relay and the subscriber's whole send path: one thread
 * hand-off (a futex wake and a context switch) per packet.  The queue is
 * there for the time before ICE connects: the bin then blocks the queue's
 * output, and the queue (leaky) keeps nicesrc's thread running, which is
 * also the thread that reads libnice's STUN for the stream.
 *
 * So the queue only goes once the connection is up, and from then on:
 * - nicesrc links straight to dtlssrtpdec (in nicesrc's thread, on the next
 *   packet, after what the queue still holds has gone through), past the
 *   capsfilter too (nicesrc's caps were negotiated through it and stay);
 *   rtpbin's rtpstorage, which keeps nothing here (media_trim_rtpbin()),
 *   is spliced out at the same moment;
 * - if ICE leaves connected, the bin blocks the peer of dtlssrtpdec's sink,
 *   now nicesrc's own pad, which would stop STUN and so keep ICE from ever
 *   recovering.  A probe of ours, added before that block, drops packets
 *   while ICE is not connected: a dropped packet never reaches a blocking
 *   probe further down the list (gstpad.c).  The ICE transport's state is
 *   read in its own "notify::state" handler, which runs before the bin's
 *   (connected after).  With webrtcbin 1.22's agent settings (no consent
 *   freshness, no keepalive checks) ICE leaves connected only at teardown,
 *   so this is a guard for other versions and settings, not a path the
 *   tests can reach;
 * - the queue, idle, is stopped on the main loop (one thread fewer). */
typedef struct {
    GstElement *caps, *queue, *storage; /* storage may be NULL */
    gint ice_up;                        /* atomic */
} RecvTrim;

static void
recv_trim_clear(gpointer data)
{
    RecvTrim *t = data;
    gst_object_unref(t->caps);
    gst_object_unref(t->queue);
    if (t->storage)
        gst_object_unref(t->storage);
}

static void
recv_trim_release(gpointer data)
{
    g_atomic_rc_box_release_full(data, recv_trim_clear);
}

static void
recv_trim_release_closure(gpointer data, GClosure *closure)
{
    recv_trim_release(data);
}

static gboolean
ice_is_up(GObject *ice)
{
    GstWebRTCICEConnectionState st;
    g_object_get(ice, "state", &st, NULL);
    return st == GST_WEBRTC_ICE_CONNECTION_STATE_CONNECTED ||
           st == GST_WEBRTC_ICE_CONNECTION_STATE_COMPLETED;
}

static void
on_ice_state(GObject *ice, GParamSpec *ps, gpointer data)
{
    RecvTrim *t = data;
    g_atomic_int_set(&t->ice_up, ice_is_up(ice));
}

static GstPadProbeReturn
drop_while_ice_down(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    RecvTrim *t = data;
    return g_atomic_int_get(&t->ice_up) ? GST_PAD_PROBE_OK : GST_PAD_PROBE_DROP;
}

static gboolean
stop_queue(gpointer data)
{
    RecvTrim *t = data;
    gst_element_set_locked_state(t->queue, TRUE);
    gst_element_set_state(t->queue, GST_STATE_NULL);
    return G_SOURCE_REMOVE;
}

/* Waits (at most 50 ms) for QUEUE to hand on what it holds; whether it did. */
static gboolean
drained(GstElement *queue)
{
    guint level = 1;
    for (int i = 0; i < 500 && level; i++) {
        g_object_get(queue, "current-level-buffers", &level, NULL);
        if (level)
            g_usleep(100);
    }
    return level == 0;
}

static GstPadProbeReturn start_fast_read(GstPad *up, GstPadProbeInfo *info, gpointer data);

/* nicesrc's thread, UP (nicesrc's source pad) blocked on a packet. */
static GstPadProbeReturn
relink_past_queue(GstPad *up, GstPadProbeInfo *info, gpointer data)
{
    RecvTrim *t = data;
    GstPad *csink = gst_element_get_static_pad(t->caps, "sink");
    GstPad *csrc = gst_element_get_static_pad(t->caps, "src");
    GstPad *qsink = gst_element_get_static_pad(t->queue, "sink");
    GstPad *qsrc = gst_element_get_static_pad(t->queue, "src");
    GstPad *down = gst_pad_get_peer(qsrc);
    if (!down || !g_atomic_int_get(&t->ice_up) || !gst_pad_unlink(csrc, qsink))
        goto out;
    /* What the queue holds goes first, by its own thread (its output is not
     * blocked while ICE is up); a few packets at most. */
    if (!drained(t->queue)) {
        gst_pad_link(csrc, qsink);
        g_warning("trim: webrtcbin's receive queue did not drain; kept");
        goto out;
    }
    gst_pad_unlink(qsrc, down);
    /* The queue's last push, if any, has left dtlssrtpdec once we hold the
     * stream lock it held: no two threads in SRTP at once. */
    GST_PAD_STREAM_LOCK(down);
    GST_PAD_STREAM_UNLOCK(down);
    gst_pad_unlink(up, csink);
    if (gst_pad_link(up, down) != GST_PAD_LINK_OK) {
        gst_pad_link(up, csink);
        gst_pad_link(qsrc, down);
        gst_pad_link(csrc, qsink);
        g_warning("trim: could not link nicesrc to dtlssrtpdec; the receive queue kept");
        goto out;
    }
    /* Nothing flows behind nicesrc now: rtpbin's storage can go too. */
    if (t->storage && !splice_out(t->storage))
        g_warning("trim: could not take rtpbin's rtpstorage out; kept");
    gst_pad_add_probe(up, GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST,
                      drop_while_ice_down, g_atomic_rc_box_acquire(t), recv_trim_release);
    gst_pad_add_probe(up, GST_PAD_PROBE_TYPE_BUFFER, start_fast_read, NULL, NULL);
    g_main_context_invoke_full(NULL, G_PRIORITY_DEFAULT, stop_queue, g_atomic_rc_box_acquire(t),
                               recv_trim_release);
out:
    if (down)
        gst_object_unref(down);
    gst_object_unref(qsink);
    gst_object_unref(qsrc);
    gst_object_unref(csink);
    gst_object_unref(csrc);
    return GST_PAD_PROBE_REMOVE;
}

/* ------------------------------------------------------------ reading */

/* nicesrc (libnice 0.1.21) hands each packet from libnice's callback to its
 * own streaming thread through a queue and g_main_loop_quit(): per packet
 * an eventfd write and a futex broadcast, and per wake-up one more poll
 * and eventfd read, besides GstBaseSrc's loop and clock work.  Once the
 * transport is up, libnice's callback is moved to one of the worker's
 * reader threads (a GMainContext each, one thread per core), which pushes
 * each packet on nicesrc's source pad as it comes; nicesrc's thread then
 * sleeps in its empty main loop until teardown.  System calls per relayed
 * packet 7.8 -> 3.4 (docs/benchmarks.md).  A reader carries the publishers
 * of several consultations, so nothing it pushes into may wait (room.c,
 * "Isolation"). */
typedef struct {
    GstPad *pad; /* nicesrc's source pad */
    GstClock *clock;
    GstClockTime base;
    GMainContext *ctx; /* the reader's */
} FastRead;

static void
fast_read(NiceAgent *agent, guint stream, guint component, guint len, gchar *buf, gpointer data)
{
    FastRead *r = data;
    /* GLib 2.74 blocks a source while it is dispatched unless it may
     * recurse, and taking its socket out of the poll and back in writes to
     * the context's eventfd twice, after which the next poll returns at
     * once: 4 system calls per wake-up.  Nothing iterates this context
     * from inside a dispatch, so libnice's socket source may "recurse". */
    GSource *cur = g_main_current_source();
    if (cur && !g_source_get_can_recurse(cur))
        g_source_set_can_recurse(cur, TRUE);
    GstBuffer *b = gst_buffer_new_memdup(buf, len);
    /* What GstBaseSrc's do-timestamp gave nicesrc's packets: running time. */
    GstClockTime now = gst_clock_get_time(r->clock);
    GST_BUFFER_DTS(b) = GST_BUFFER_PTS(b) = now > r->base ? now - r->base : 0;
    /* Flushing once the transport stops; nothing else can come back. */
    gst_pad_push(r->pad, b);
}

/* Reader's thread, between two callbacks. */
static gboolean
fast_read_free(gpointer data)
{
    FastRead *r = data;
    gst_object_unref(r->pad);
    gst_object_unref(r->clock);
    g_free(r);
    return G_SOURCE_REMOVE;
}

/* nicesrc is going (any thread): its change to READY has detached the
 * callback (nice_agent_attach_recv() with none), but the last one may still
 * be running in the reader's thread, so R goes in that thread. */
static void
fast_read_stop(gpointer data)
{
    FastRead *r = data;
    g_main_context_invoke(r->ctx, fast_read_free, r);
}

/* The element whose sink pad E's pad NAME is linked to, directly; a new
 * ref or NULL. */
static GstElement *
next_element(GstElement *e, const char *name)
{
    GstPad *p = e ? gst_element_get_static_pad(e, name) : NULL;
    GstPad *peer = p ? gst_pad_get_peer(p) : NULL;
    GstElement *next = peer && !GST_IS_PROXY_PAD(peer) ? gst_pad_get_parent_element(peer) : NULL;
    g_clear_object(&peer);
    g_clear_object(&p);
    return next;
}

/* Skips the ghost pads after SRC (media_trim_skip_ghosts()); warns if some
 * are left. */
static void
skip_ghosts_or_warn(GstPad *src, const char *what)
{
    if (!src || (!media_trim_skip_ghosts(src) && GST_IS_PROXY_PAD(GST_PAD_PEER(src))))
        g_warning("trim: could not link %s past its ghost pads; kept", what);
}

/* nicesrc's thread, the only one pushing into the receive path: nicesrc
 * (UP) is linked straight to dtlssrtpdemux, past dtlssrtpdec's ghost pad,
 * and srtpdec straight to rtpbin's rtpsession, past three ghost pads (of
 * dtlssrtpdec, the transport's receive bin and rtpbin). */
static void
skip_receive_ghosts(GstPad *up)
{
    skip_ghosts_or_warn(up, "nicesrc");
    GstPad *peer = gst_pad_get_peer(up);
    GstElement *demux = peer ? gst_pad_get_parent_element(peer) : NULL;
    GstElement *srtp = is_factory(demux, "dtlssrtpdemux") ? next_element(demux, "rtp_src") : NULL;
    GstPad *out = is_factory(srtp, "srtpdec") ? gst_element_get_static_pad(srtp, "rtp_src") : NULL;
    skip_ghosts_or_warn(out, "srtpdec");
    g_clear_object(&out);
    g_clear_object(&srtp);
    g_clear_object(&demux);
    g_clear_object(&peer);
}

/* nicesrc's thread, on the first packet after UP (nicesrc's source pad) was
 * linked straight to dtlssrtpdec: the receive path's ghost pads go, then
 * libnice's callback moves to a reader. */
static GstPadProbeReturn
start_fast_read(GstPad *up, GstPadProbeInfo *info, gpointer data)
{
    skip_receive_ghosts(up);
    GstElement *src = gst_pad_get_parent_element(up);
    /* The reader's first packet may come through here too while this
     * probe is still in place: the mark on nicesrc says it is done. */
    GMainContext *ctx = src && !g_object_get_data(G_OBJECT(src), "consultd-fast-read")
                            ? media_reader_context()
                            : NULL;
    NiceAgent *agent = NULL;
    guint stream = 0, component = 0;
    GstClock *clock = NULL;
    if (ctx) {
        g_object_get(src, "agent", &agent, "stream", &stream, "component", &component, NULL);
        clock = gst_element_get_clock(src);
        if (!agent || !clock)
            g_warning("trim: nicesrc has no agent or clock; it keeps reading");
    }
    if (agent && clock) {
        FastRead *r = g_new0(FastRead, 1);
        r->pad = gst_object_ref(up);
        r->clock = g_steal_pointer(&clock);
        r->base = gst_element_get_base_time(src);
        r->ctx = ctx;
        g_object_set_data_full(G_OBJECT(src), "consultd-fast-read", r, fast_read_stop);
        /* The packets nicesrc has read already (a few at most) still come
         * through its thread and may meet the reader's first ones: both
         * push into dtlssrtpdemux's sink pad, whose stream lock lets one in
         * at a time; SRTP's replay window and the receivers' jitterbuffers
         * take the odd packet out of order. */
        if (!nice_agent_attach_recv(agent, stream, component, ctx, fast_read, r))
            g_warning("trim: could not move libnice's receive callback; nicesrc reads");
    }
    g_clear_object(&clock);
    g_clear_object(&agent);
    if (src)
        gst_object_unref(src);
    return GST_PAD_PROBE_REMOVE;
}

/* The ICE transport of WEBRTC's first transceiver (max-bundle: the only
 * one), a new ref, or NULL. */
static GObject *
ice_transport(GstElement *webrtc)
{
    GstWebRTCRTPTransceiver *trans = NULL;
    GstWebRTCRTPReceiver *recv = NULL;
    GObject *dtls = NULL, *ice = NULL;
    g_signal_emit_by_name(webrtc, "get-transceiver", 0, &trans);
    if (trans)
        g_object_get(trans, "receiver", &recv, NULL);
    if (recv)
        g_object_get(recv, "transport", &dtls, NULL);
    if (dtls)
        g_object_get(dtls, "transport", &ice, NULL);
    g_clear_object(&dtls);
    g_clear_object(&recv);
    g_clear_object(&trans);
    return ice;
}

/* The upstream neighbour of E (linked to its sink pad), a new ref, or NULL. */
static GstElement *
upstream_of(GstElement *e)
{
    GstPad *sink = e ? gst_element_get_static_pad(e, "sink") : NULL;
    GstPad *peer = sink ? gst_pad_get_peer(sink) : NULL;
    GstElement *up = peer ? gst_pad_get_parent_element(peer) : NULL;
    g_clear_object(&peer);
    g_clear_object(&sink);
    return up;
}

void
media_trim_receive_queue(GstElement *webrtc)
{
    GObject *ice = ice_transport(webrtc);
    GstElement *queue = find_element(webrtc, "queue", NULL, "TransportReceiveBin");
    GstElement *caps = upstream_of(queue);
    GstElement *src = upstream_of(caps);
    GstPad *up = is_factory(src, "nicesrc") ? gst_element_get_static_pad(src, "src") : NULL;
    if (!ice || !is_factory(caps, "capsfilter") || !up) {
        g_warning("trim: webrtcbin's receive bin is not nicesrc -> capsfilter -> queue -> "
                  "dtlssrtpdec; its queue kept");
    } else {
        RecvTrim *t = g_atomic_rc_box_new0(RecvTrim);
        t->caps = gst_object_ref(caps);
        t->queue = gst_object_ref(queue);
        t->storage = find_element(webrtc, "rtpstorage", "rtpbin", NULL);
        g_signal_connect_data(ice, "notify::state", G_CALLBACK(on_ice_state),
                              g_atomic_rc_box_acquire(t), recv_trim_release_closure, 0);
        g_atomic_int_set(&t->ice_up, ice_is_up(ice));
        gst_pad_add_probe(up, GST_PAD_PROBE_TYPE_BLOCK | GST_PAD_PROBE_TYPE_BUFFER,
                          relink_past_queue, t, recv_trim_release);
    }
    g_clear_object(&up);
    g_clear_object(&src);
    g_clear_object(&caps);
    g_clear_object(&queue);
    g_clear_object(&ice);
}

/* ------------------------------------------------------------ send path */

/* webrtcbin's send path for each sink pad is
 *
 *   sink_N (ghost) -> clocksync -> bin(rtpulpfecenc -> rtpredenc) -> rtpfunnel
 *     -> rtpbin -> dtlssrtpenc(srtpenc -> clocksync -> funnel) -> nicesink
 *
 * The first clocksync (sync=true) makes one clock wait per packet, which
 * returns at once for relayed packets (they are already late); the
 * encoders pass packets through when no FEC or RED is negotiated
 * (fec_is_idle()); dtlssrtpenc's clocksync has sync off.  Together about 8
 * pad pushes per packet, 4 of them through ghost pads.  Retargeting the
 * ghost pad at the funnel's pad and splicing out the second clocksync
 * leaves them unlinked and idle. */
/* Whether FEC, a bin of webrtcbin's, holds only encoders that pass packets
 * through: rtpulpfecenc without a FEC payload type (255), rtpredenc with
 * no redundant blocks (distance 0, allow-no-red-blocks false).  webrtcbin
 * sets those only when FEC or RED is negotiated. */
static gint
element_not_busy(gconstpointer value, gconstpointer data)
{
    GstElement *e = g_value_get_object(value);
    guint n = 0;
    gboolean allow = FALSE;
    if (is_factory(e, "rtpulpfecenc")) {
        g_object_get(e, "pt", &n, NULL);
        return n == 255;
    }
    if (is_factory(e, "rtpredenc")) {
        g_object_get(e, "distance", &n, "allow-no-red-blocks", &allow, NULL);
        return n == 0 && !allow;
    }
    return 0; /* an element this code does not know */
}

static gboolean
fec_is_idle(GstElement *fec)
{
    if (!GST_IS_BIN(fec))
        return FALSE;
    GstIterator *it = gst_bin_iterate_elements(GST_BIN(fec));
    GValue v = G_VALUE_INIT;
    gboolean busy = gst_iterator_find_custom(it, element_not_busy, &v, NULL);
    if (busy)
        g_value_unset(&v);
    gst_iterator_free(it);
    return !busy;
}

/* On a packet out of FSRC, rtpfunnel's source pad, with every other thread
 * that might push into the funnel held at the block: the funnel is linked
 * straight to rtpsession (past rtpbin's ghost pad) and rtpsession to
 * srtpenc (past rtpbin's, the transport's send bin's and dtlssrtpenc's). */
static GstPadProbeReturn
skip_send_ghosts(GstPad *fsrc, GstPadProbeInfo *info, gpointer data)
{
    if (!GST_IS_PROXY_PAD(GST_PAD_PEER(fsrc)))
        return GST_PAD_PROBE_REMOVE; /* a second relay's probe: done */
    skip_ghosts_or_warn(fsrc, "rtpfunnel");
    GstPad *peer = gst_pad_get_peer(fsrc);
    GstElement *session = peer ? gst_pad_get_parent_element(peer) : NULL;
    GstPad *out = is_factory(session, "rtpsession")
                      ? gst_element_get_static_pad(session, "send_rtp_src")
                      : NULL;
    skip_ghosts_or_warn(out, "rtpsession");
    g_clear_object(&out);
    g_clear_object(&session);
    g_clear_object(&peer);
    return GST_PAD_PROBE_REMOVE;
}

MediaTrimResult
media_trim_send_path(GstPad *sink)
{
    MediaTrimResult res = MEDIA_TRIM_LATER;
    GstPad *target = gst_ghost_pad_get_target(GST_GHOST_PAD(sink));
    GstElement *sync = target ? gst_pad_get_parent_element(target) : NULL;
    GstPad *sync_src = sync ? gst_element_get_static_pad(sync, "src") : NULL;
    GstPad *fec_sink = sync_src ? gst_pad_get_peer(sync_src) : NULL;
    GstElement *fec = fec_sink ? gst_pad_get_parent_element(fec_sink) : NULL;
    GstPad *fec_src = fec ? gst_element_get_static_pad(fec, "src") : NULL;
    GstPad *funnel = fec_src ? gst_pad_get_peer(fec_src) : NULL;
    if (!funnel)
        goto out; /* not built yet */
    res = MEDIA_TRIM_NEVER;
    if (!is_factory(sync, "clocksync") || !fec_is_idle(fec)) {
        g_warning("trim: webrtcbin's send path is not clocksync -> idle FEC/RED bin -> "
                  "funnel; kept");
        goto out;
    }
    if (!gst_pad_unlink(fec_src, funnel)) {
        g_warning("trim: could not unlink webrtcbin's FEC/RED bin from its funnel; send path kept");
        goto out;
    }
    if (!gst_ghost_pad_set_target(GST_GHOST_PAD(sink), funnel)) {
        gst_ghost_pad_set_target(GST_GHOST_PAD(sink), target);
        gst_pad_link(fec_src, funnel);
        g_warning("trim: could not link webrtcbin's sink pad to its funnel; send path kept");
        goto out;
    }
    res = MEDIA_TRIM_DONE;
    /* The relay's pad goes straight into the funnel, past webrtcbin's sink
     * pad; the funnel on into rtpsession and rtpsession into srtpenc on the
     * next packet out of the funnel (skip_send_ghosts()). */
    GstPad *relay = gst_pad_get_peer(sink);
    skip_ghosts_or_warn(relay, "the relay");
    g_clear_object(&relay);
    GstElement *rtpfunnel = gst_pad_get_parent_element(funnel);
    GstPad *fsrc =
        is_factory(rtpfunnel, "rtpfunnel") ? gst_element_get_static_pad(rtpfunnel, "src") : NULL;
    if (!fsrc)
        g_warning("trim: webrtcbin's send path has no rtpfunnel; its ghost pads kept");
    else if (GST_IS_PROXY_PAD(GST_PAD_PEER(fsrc))) /* the transport's first relay */
        gst_pad_add_probe(fsrc, GST_PAD_PROBE_TYPE_BLOCK | GST_PAD_PROBE_TYPE_BUFFER,
                          skip_send_ghosts, NULL, NULL);
    g_clear_object(&fsrc);
    g_clear_object(&rtpfunnel);
    /* Further down, dtlssrtpenc's clocksync, there to hold RTP to the clock
     * only when its rtp-sync is set (webrtcbin does not set it).  One per
     * transport: the second relay into this webrtcbin finds it gone. */
    GstElement *webrtc = gst_pad_get_parent_element(sink);
    GstElement *dtls_sync = webrtc ? find_element(webrtc, "clocksync", "dtlssrtpenc", NULL) : NULL;
    gboolean syncs = TRUE;
    if (dtls_sync)
        g_object_get(dtls_sync, "sync", &syncs, NULL);
    if (dtls_sync && !syncs && !splice_out(dtls_sync)) {
        GstPad *p = gst_element_get_static_pad(dtls_sync, "src");
        if (gst_pad_is_linked(p))
            g_warning("trim: could not take dtlssrtpenc's clocksync out; kept");
        gst_object_unref(p);
    }
    g_clear_object(&dtls_sync);
    g_clear_object(&webrtc);
out:
    g_clear_object(&funnel);
    g_clear_object(&fec_src);
    g_clear_object(&fec);
    g_clear_object(&fec_sink);
    g_clear_object(&sync_src);
    g_clear_object(&sync);
    g_clear_object(&target);
    return res;
}
