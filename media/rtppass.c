/* rtppass.c - see rtppass.h. */
#include "rtppass.h"

#include "counters.h"
#include "repair.h"

#include <gst/video/video.h>
#include <string.h>

struct _MediaRtpPass {
    GstElement parent;
    GstPad *sink, *src;
    guint latency; /* kept only so rtpbin and webrtcbin may set it */
    gboolean do_retransmission;
    guint64 pushed; /* atomic */
    int nack_pt;    /* packets of this payload type are NACKed; -1: none */
    MediaLoss loss; /* streaming thread only */
    gint64 keyframe_asked_us;
};

/* Until a retransmission has measured the round trip. */
#define FIRST_RETRY_US (100 * 1000)

/* At most one keyframe request per this for packets given up. */
#define GIVE_UP_KEYFRAME_INTERVAL_US (500 * 1000)

enum {
    PROP_0,
    PROP_LATENCY,
    PROP_DO_RETRANSMISSION,
    PROP_STATS
};

G_DEFINE_TYPE(MediaRtpPass, media_rtp_pass, GST_TYPE_ELEMENT)

static GstStaticPadTemplate sink_templ = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("application/x-rtp"));
static GstStaticPadTemplate src_templ = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS("application/x-rtp"));

/* Asks the publisher again for what did not arrive: an upstream
 * GstRTPRetransmissionRequest per packet, which rtpsession (upstream of
 * us in rtpbin) turns into a generic NACK, in early feedback (RFC 4585)
 * when it may.  This is what rtpjitterbuffer does with do-retransmission,
 * without holding anything back: packets go on as they come, the
 * retransmission follows when it comes, and the subscribers' jitterbuffers
 * and the recorder order them. */
static void
ask_again(MediaRtpPass *self, GstBuffer *buf)
{
    MediaRtpHead rtp;
    if (!media_rtp_head(buf, &rtp) || rtp.pt != self->nack_pt)
        return;
    guint16 seq = rtp.seq;
    guint32 ssrc = rtp.ssrc;
    guint16 missing[32];
    guint64 recovered = self->loss.recovered, given_up = self->loss.given_up;
    gint64 now = g_get_monotonic_time();
    guint n = media_loss_packet(&self->loss, seq, now, missing, G_N_ELEMENTS(missing));
    if (self->loss.recovered != recovered)
        media_count(MEDIA_RECOVERED);
    /* A packet that will not come: the frame it belongs to, and all that
     * refer to it, cannot be decoded by anyone downstream, who would wait
     * (Chromium: 3 s) before asking for a keyframe themselves.  Ask now
     * (a PLI, see room.c's fanout_request_keyframe()). */
    if (self->loss.given_up != given_up &&
        media_throttle(&self->keyframe_asked_us, now, GIVE_UP_KEYFRAME_INTERVAL_US)) {
        media_count(MEDIA_KEYFRAME_REQUESTS);
        gst_pad_push_event(
            self->sink, gst_video_event_new_upstream_force_key_unit(GST_CLOCK_TIME_NONE, FALSE, 0));
    }
    guint deadline_ms = (guint)(self->loss.retry_us / 1000);
    for (guint i = 0; i < n; i++) {
        GstStructure *st = gst_structure_new("GstRTPRetransmissionRequest", "seqnum", G_TYPE_UINT,
                                             (guint)missing[i], "ssrc", G_TYPE_UINT, ssrc,
                                             "deadline", G_TYPE_UINT, deadline_ms, "delay",
                                             G_TYPE_UINT, 0u, "avg-rtt", G_TYPE_UINT, 0u, NULL);
        gst_pad_push_event(self->sink, gst_event_new_custom(GST_EVENT_CUSTOM_UPSTREAM, st));
        media_count(MEDIA_NACKS_SENT);
    }
}

static GstFlowReturn
pass_chain(GstPad *pad, GstObject *parent, GstBuffer *buf)
{
    MediaRtpPass *self = (MediaRtpPass *)parent;
    __atomic_fetch_add(&self->pushed, 1, __ATOMIC_RELAXED);
    if (self->nack_pt >= 0)
        ask_again(self, buf);
    return gst_pad_push(self->src, buf);
}

static void
pass_set_property(GObject *obj, guint id, const GValue *v, GParamSpec *ps)
{
    MediaRtpPass *self = (MediaRtpPass *)obj;
    if (id == PROP_LATENCY)
        self->latency = g_value_get_uint(v);
    else if (id == PROP_DO_RETRANSMISSION)
        self->do_retransmission = g_value_get_boolean(v);
    else
        G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
}

static void
pass_get_property(GObject *obj, guint id, GValue *v, GParamSpec *ps)
{
    MediaRtpPass *self = (MediaRtpPass *)obj;
    if (id == PROP_LATENCY)
        g_value_set_uint(v, self->latency);
    else if (id == PROP_DO_RETRANSMISSION)
        g_value_set_boolean(v, self->do_retransmission);
    else if (id == PROP_STATS)
        /* The fields of rtpjitterbuffer's, which webrtcbin's get-stats reads. */
        g_value_take_boxed(
            v,
            gst_structure_new("application/x-rtp-jitterbuffer-stats", "num-pushed", G_TYPE_UINT64,
                              __atomic_load_n(&self->pushed, __ATOMIC_RELAXED), "num-lost",
                              G_TYPE_UINT64, (guint64)0, "num-late", G_TYPE_UINT64, (guint64)0,
                              "num-duplicates", G_TYPE_UINT64, (guint64)0, "avg-jitter",
                              G_TYPE_UINT64, (guint64)0, "rtx-count", G_TYPE_UINT64, (guint64)0,
                              "rtx-success-count", G_TYPE_UINT64, (guint64)0, "rtx-per-packet",
                              G_TYPE_DOUBLE, 0.0, "rtx-rtt", G_TYPE_UINT64, (guint64)0, NULL));
    else
        G_OBJECT_WARN_INVALID_PROPERTY_ID(obj, id, ps);
}

static void
media_rtp_pass_class_init(MediaRtpPassClass *klass)
{
    GObjectClass *oc = G_OBJECT_CLASS(klass);
    GstElementClass *ec = GST_ELEMENT_CLASS(klass);
    oc->set_property = pass_set_property;
    oc->get_property = pass_get_property;
    g_object_class_install_property(
        oc, PROP_LATENCY,
        g_param_spec_uint("latency", "Latency", "Ignored: nothing is held back", 0, G_MAXUINT, 0,
                          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
    g_object_class_install_property(
        oc, PROP_DO_RETRANSMISSION,
        g_param_spec_boolean("do-retransmission", "Retransmission",
                             "Ignored: a video stream's missing packets are always NACKed", FALSE,
                             G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
    g_object_class_install_property(
        oc, PROP_STATS,
        g_param_spec_boxed("stats", "Statistics", "Packets pushed; nothing is lost here",
                           GST_TYPE_STRUCTURE, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
    gst_element_class_add_static_pad_template(ec, &sink_templ);
    gst_element_class_add_static_pad_template(ec, &src_templ);
    gst_element_class_set_static_metadata(ec, "RTP pass-through", "Filter/Network/RTP",
                                          "Stands in for rtpbin's jitterbuffer in a relay",
                                          "consultd");
}

static void
media_rtp_pass_init(MediaRtpPass *self)
{
    media_loss_init(&self->loss, FIRST_RETRY_US);
    self->sink = gst_pad_new_from_static_template(&sink_templ, "sink");
    gst_pad_set_chain_function(self->sink, pass_chain);
    GST_PAD_SET_PROXY_CAPS(self->sink);
    GST_PAD_SET_PROXY_ALLOCATION(self->sink);
    gst_element_add_pad(GST_ELEMENT(self), self->sink);
    self->src = gst_pad_new_from_static_template(&src_templ, "src");
    GST_PAD_SET_PROXY_CAPS(self->src);
    gst_element_add_pad(GST_ELEMENT(self), self->src);
}

GstElement *
media_rtp_pass_new(int nack_pt)
{
    MediaRtpPass *self = g_object_new(media_rtp_pass_get_type(), NULL);
    self->nack_pt = nack_pt;
    return GST_ELEMENT(self);
}
