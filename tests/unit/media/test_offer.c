/* Unit tests for media/offer.c: what the relay reads from an offer. */
#include <gst/gst.h>
#include <string.h>

#include "offer.h"

#define HEAD                                                                                       \
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"                    \
    "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"                                     \
    "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:"  \
    "77:88:99:AA:BB:CC:DD:EE:FF\r\n"
#define AUDIO                                                                                      \
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"                           \
    "a=rtpmap:111 opus/48000/2\r\n"
#define VIDEO_VP8                                                                                  \
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"                         \
    "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"                    \
    "a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"     \
    "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n"                      \
    "a=rtcp-fb:96 goog-remb\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"

static gboolean
inspect(const char *text, MediaOfferTrack tracks[MEDIA_N_KINDS], GError **error)
{
    GstSDPMessage *sdp;
    g_assert_cmpint(gst_sdp_message_new_from_text(text, &sdp), ==, GST_SDP_OK);
    gboolean ok = media_offer_inspect(sdp, tracks, error);
    gst_sdp_message_free(sdp);
    return ok;
}

static void
clear(MediaOfferTrack tracks[MEDIA_N_KINDS])
{
    for (int k = 0; k < MEDIA_N_KINDS; k++)
        g_clear_pointer(&tracks[k].codec, g_free);
}

static void
test_browser_offer(void)
{
    MediaOfferTrack t[MEDIA_N_KINDS] = {{0}};
    g_autoptr(GError) err = NULL;
    g_assert_true(inspect(HEAD AUDIO VIDEO_VP8, t, &err));
    g_assert_true(t[MEDIA_KIND_AUDIO].present);
    g_assert_cmpstr(t[MEDIA_KIND_AUDIO].codec, ==, "OPUS");
    g_assert_cmpuint(t[MEDIA_KIND_AUDIO].pt, ==, 111);
    g_assert_cmpuint(t[MEDIA_KIND_AUDIO].mline, ==, 0);
    g_assert_cmpuint(t[MEDIA_KIND_AUDIO].fb, ==, 0);
    g_assert_cmpstr(t[MEDIA_KIND_VIDEO].codec, ==, "VP8");
    g_assert_cmpuint(t[MEDIA_KIND_VIDEO].pt, ==, 96);
    g_assert_cmpuint(t[MEDIA_KIND_VIDEO].mline, ==, 1);
    g_assert_cmpuint(t[MEDIA_KIND_VIDEO].ast_id, ==, 3);
    g_assert_cmpuint(t[MEDIA_KIND_VIDEO].twcc_id, ==, 5);
    g_assert_cmpuint(t[MEDIA_KIND_VIDEO].fb, ==, MEDIA_OFFER_FB_NACK | MEDIA_OFFER_FB_REMB);
    clear(t);
}

static void
test_h264_needs_packetization_mode_1(void)
{
    const char *mode0 = HEAD "m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n"
                             "a=rtpmap:102 H264/90000\r\n"
                             "a=fmtp:102 packetization-mode=0;profile-level-id=42e01f\r\n";
    const char *mode1 = HEAD "m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n"
                             "a=rtpmap:102 H264/90000\r\na=rtcp-fb:* nack\r\n"
                             "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n";
    MediaOfferTrack t[MEDIA_N_KINDS] = {{0}};
    g_autoptr(GError) err = NULL;
    g_assert_false(inspect(mode0, t, &err));
    g_assert_error(err, MEDIA_ERROR, MEDIA_ERROR_NO_CODEC);
    clear(t);
    memset(t, 0, sizeof t);
    g_assert_true(inspect(mode1, t, NULL));
    g_assert_cmpstr(t[MEDIA_KIND_VIDEO].codec, ==, "H264");
    g_assert_cmpuint(t[MEDIA_KIND_VIDEO].fb, ==, MEDIA_OFFER_FB_NACK); /* the * form */
    g_assert_false(t[MEDIA_KIND_AUDIO].present);
    clear(t);
}

static void
test_refused_offers(void)
{
    MediaOfferTrack t[MEDIA_N_KINDS] = {{0}};
    g_autoptr(GError) e1 = NULL, e2 = NULL;
    /* No ICE credentials: not an offer we can answer. */
    g_assert_false(inspect("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" AUDIO, t, &e1));
    g_assert_error(e1, MEDIA_ERROR, MEDIA_ERROR_BAD_OFFER);
    clear(t);
    memset(t, 0, sizeof t);
    /* A rejected m-line (port 0) does not count. */
    g_assert_false(inspect(HEAD "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
                                "a=rtpmap:111 opus/48000/2\r\n",
                           t, &e2));
    g_assert_error(e2, MEDIA_ERROR, MEDIA_ERROR_NO_CODEC);
    clear(t);
}

int
main(int argc, char **argv)
{
    gst_init(&argc, &argv);
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/offer/browser", test_browser_offer);
    g_test_add_func("/offer/h264-mode-1", test_h264_needs_packetization_mode_1);
    g_test_add_func("/offer/refused", test_refused_offers);
    return g_test_run();
}
