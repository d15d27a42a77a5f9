/* Unit tests for media/repair.c: the relay's retransmission history, the
 * reading of a receiver's RTCP feedback, the REMB we write, the publisher
 * side's loss tracking (when to NACK what) and the throttle. */
#include <gst/gst.h>
#include <gst/rtp/gstrtcpbuffer.h>
#include <gst/rtp/gstrtpbuffer.h>

#include "repair.h"

static GstBuffer *
rtp_packet(guint16 seq)
{
    GstBuffer *b = gst_rtp_buffer_new_allocate(100, 0, 0);
    GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
    gst_rtp_buffer_map(b, GST_MAP_WRITE, &rtp);
    gst_rtp_buffer_set_seq(&rtp, seq);
    gst_rtp_buffer_set_ssrc(&rtp, 0x1234);
    gst_rtp_buffer_set_payload_type(&rtp, 96);
    gst_rtp_buffer_unmap(&rtp);
    return b;
}

static guint16
seq_of(GstBuffer *b)
{
    GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
    gst_rtp_buffer_map(b, GST_MAP_READ, &rtp);
    guint16 s = gst_rtp_buffer_get_seq(&rtp);
    gst_rtp_buffer_unmap(&rtp);
    return s;
}

static void
test_history_keeps_the_last_packets(void)
{
    MediaHistory *h = media_history_new();
    /* Across the wrap of the 16-bit sequence number. */
    for (guint i = 0; i < MEDIA_HISTORY_PACKETS + 100; i++) {
        GstBuffer *b = rtp_packet((guint16)(65000 + i));
        media_history_put(h, b);
        gst_buffer_unref(b);
    }
    GstBuffer *one = rtp_packet(7);
    MediaRtpHead head;
    g_assert_true(media_rtp_head(one, &head));
    g_assert_cmpuint(head.pt, ==, 96);
    g_assert_cmpuint(head.seq, ==, 7);
    g_assert_cmpuint(head.ssrc, ==, 0x1234);
    gst_buffer_unref(one);
    guint16 last = (guint16)(65000 + MEDIA_HISTORY_PACKETS + 99);
    GstBuffer *b = media_history_get(h, last);
    g_assert_nonnull(b);
    g_assert_cmpuint(seq_of(b), ==, last);
    gst_buffer_unref(b);
    b = media_history_get(h, (guint16)(last - MEDIA_HISTORY_PACKETS + 1));
    g_assert_nonnull(b);
    gst_buffer_unref(b);
    /* Older than the ring, and never sent. */
    g_assert_null(media_history_get(h, (guint16)(last - MEDIA_HISTORY_PACKETS)));
    g_assert_null(media_history_get(h, 65000));
    g_assert_null(media_history_get(h, (guint16)(last + 1)));
    /* Not RTP: ignored. */
    GstBuffer *junk = gst_buffer_new_allocate(NULL, 2, NULL);
    media_history_put(h, junk);
    gst_buffer_unref(junk);
    media_history_free(h);
    media_history_free(NULL);
}

/* A receiver report, a PLI, a generic NACK of 100 with 101 and 103 in its
 * bitmask, and a REMB of BPS. */
static GstBuffer *
feedback(guint64 bps)
{
    GstBuffer *buf = gst_rtcp_buffer_new(1400);
    GstRTCPBuffer rtcp = GST_RTCP_BUFFER_INIT;
    GstRTCPPacket p;
    gst_rtcp_buffer_map(buf, GST_MAP_READWRITE, &rtcp);
    gst_rtcp_buffer_add_packet(&rtcp, GST_RTCP_TYPE_RR, &p);
    gst_rtcp_packet_rr_set_ssrc(&p, 1);
    gst_rtcp_buffer_add_packet(&rtcp, GST_RTCP_TYPE_PSFB, &p);
    gst_rtcp_packet_fb_set_type(&p, GST_RTCP_PSFB_TYPE_PLI);
    gst_rtcp_packet_fb_set_sender_ssrc(&p, 1);
    gst_rtcp_packet_fb_set_media_ssrc(&p, 0x1234);
    gst_rtcp_buffer_add_packet(&rtcp, GST_RTCP_TYPE_RTPFB, &p);
    gst_rtcp_packet_fb_set_type(&p, GST_RTCP_RTPFB_TYPE_NACK);
    gst_rtcp_packet_fb_set_sender_ssrc(&p, 1);
    gst_rtcp_packet_fb_set_media_ssrc(&p, 0x1234);
    gst_rtcp_packet_fb_set_fci_length(&p, 1);
    guint8 *fci = gst_rtcp_packet_fb_get_fci(&p);
    GST_WRITE_UINT16_BE(fci, 100);
    GST_WRITE_UINT16_BE(fci + 2, 0x0005); /* 101 and 103 */
    gst_rtcp_buffer_unmap(&rtcp);
    if (bps)
        g_assert_true(media_remb_add(buf, 1, 0x1234, bps));
    return buf;
}

static void
test_feedback_is_read(void)
{
    MediaFeedback fb;
    GstBuffer *buf = feedback(0);
    g_assert_true(media_feedback_scan(buf, &fb));
    g_assert_cmpuint(fb.plis, ==, 1);
    g_assert_cmpuint(fb.firs, ==, 0);
    g_assert_cmpuint(fb.n_nacks, ==, 3);
    g_assert_cmpuint(fb.nacks[0], ==, 100);
    g_assert_cmpuint(fb.nacks[1], ==, 101);
    g_assert_cmpuint(fb.nacks[2], ==, 103);
    g_assert_cmpuint(fb.remb_bps, ==, 0);
    gst_buffer_unref(buf);

    /* Not RTCP at all. */
    GstBuffer *junk = gst_buffer_new_allocate(NULL, 8, NULL);
    gst_buffer_memset(junk, 0, 0xff, 8);
    g_assert_false(media_feedback_scan(junk, &fb));
    g_assert_cmpuint(fb.n_nacks, ==, 0);
    gst_buffer_unref(junk);
}

static void
test_remb_round_trips(void)
{
    /* Exact below 2^18; above, the 18-bit mantissa loses the low bits
     * (never more than one part in 2^17, and never rounding up). */
    const guint64 rates[] = {30000, 262143, 400000, 2500000, 123456789};
    for (guint i = 0; i < G_N_ELEMENTS(rates); i++) {
        GstBuffer *buf = feedback(rates[i]);
        MediaFeedback fb;
        g_assert_true(media_feedback_scan(buf, &fb));
        g_assert_cmpuint(fb.remb_bps, <=, rates[i]);
        g_assert_cmpuint(fb.remb_bps, >=, rates[i] - rates[i] / (1 << 17));
        g_assert_cmpuint(fb.plis, ==, 1); /* the rest is still read */
        g_assert_cmpuint(fb.n_nacks, ==, 3);
        gst_buffer_unref(buf);
    }
}

#define MS 1000

static void
test_loss_asks_again_then_gives_up(void)
{
    MediaLoss l;
    guint16 out[64];
    media_loss_init(&l, 100 * MS);
    gint64 t = 1000 * MS;
    g_assert_cmpuint(media_loss_packet(&l, 10, t, out, 64), ==, 0);
    g_assert_cmpuint(media_loss_packet(&l, 11, t, out, 64), ==, 0);
    /* 12 and 13 missing: asked for at once. */
    g_assert_cmpuint(media_loss_packet(&l, 14, t, out, 64), ==, 2);
    g_assert_cmpuint(out[0], ==, 12);
    g_assert_cmpuint(out[1], ==, 13);
    g_assert_cmpuint(l.missing, ==, 2);
    /* 12 comes 40 ms later: recovered, and the round trip is measured. */
    t += 40 * MS;
    g_assert_cmpuint(media_loss_packet(&l, 12, t, out, 64), ==, 0);
    g_assert_cmpuint(l.recovered, ==, 1);
    g_assert_cmpint(l.rtt_us, ==, 40 * MS);
    g_assert_cmpint(l.retry_us, ==, MAX(60 * MS + 10 * MS, MEDIA_LOSS_RETRY_MIN_US));
    /* 13 is asked for again once its retry time (the first one, 100 ms)
     * has passed, not before. */
    t += 30 * MS;
    g_assert_cmpuint(media_loss_packet(&l, 15, t, out, 64), ==, 0);
    t += 40 * MS;
    g_assert_cmpuint(media_loss_packet(&l, 16, t, out, 64), ==, 1);
    g_assert_cmpuint(out[0], ==, 13);
    /* Then every retry, MEDIA_LOSS_TRIES times in all, then forgotten. */
    guint16 seq = 17;
    guint asked = 3; /* 12 and 13 once, 13 again */
    for (int i = 0; i < 50; i++) {
        t += l.retry_us;
        asked += media_loss_packet(&l, seq++, t, out, 64);
    }
    g_assert_cmpuint(asked, ==, MEDIA_LOSS_TRIES + 1); /* 12 once, 13 TRIES times */
    g_assert_cmpuint(l.missing, ==, 0);
    g_assert_cmpuint(l.given_up, ==, 1);
    /* A duplicate of something long gone changes nothing. */
    g_assert_cmpuint(media_loss_packet(&l, 13, t, out, 64), ==, 0);
    g_assert_cmpuint(l.recovered, ==, 1);
}

static void
test_loss_across_the_wrap_and_jumps(void)
{
    MediaLoss l;
    guint16 out[64];
    media_loss_init(&l, 100 * MS);
    media_loss_packet(&l, 65534, 0, out, 64);
    g_assert_cmpuint(media_loss_packet(&l, 1, 0, out, 64), ==, 2);
    g_assert_cmpuint(out[0], ==, 65535);
    g_assert_cmpuint(out[1], ==, 0);
    /* A jump beyond MEDIA_LOSS_MAX_GAP (a new stream, a long outage) is
     * not a list of losses: nothing asked, nothing remembered. */
    g_assert_cmpuint(media_loss_packet(&l, 1 + MEDIA_LOSS_MAX_GAP + 1, 0, out, 64), ==, 0);
    g_assert_cmpuint(l.missing, ==, 0);
    /* At most MAX are returned; the rest is still tracked. */
    g_assert_cmpuint(media_loss_packet(&l, 1 + MEDIA_LOSS_MAX_GAP + 12, 0, out, 4), ==, 4);
    g_assert_cmpuint(l.missing, ==, 10);
}

static void
test_throttle(void)
{
    gint64 last = 0;
    g_assert_true(media_throttle(&last, 1000, 500));
    g_assert_false(media_throttle(&last, 1400, 500));
    g_assert_true(media_throttle(&last, 1500, 500));
    g_assert_cmpint(last, ==, 1500);
}

int
main(int argc, char **argv)
{
    gst_init(&argc, &argv);
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/repair/history", test_history_keeps_the_last_packets);
    g_test_add_func("/repair/feedback", test_feedback_is_read);
    g_test_add_func("/repair/remb", test_remb_round_trips);
    g_test_add_func("/repair/loss/retries", test_loss_asks_again_then_gives_up);
    g_test_add_func("/repair/loss/wrap", test_loss_across_the_wrap_and_jumps);
    g_test_add_func("/repair/throttle", test_throttle);
    return g_test_run();
}
