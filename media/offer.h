/* offer.h - what a WHIP/WHEP offer asks for, read from its SDP: per kind
 * the codec the relay will carry (VP8, then H.264 packetization-mode 1, for
 * video; Opus for audio), its payload type and m-line, the header
 * extensions and the RTCP feedback it offers.  Pure functions over
 * GstSDPMessage; unit-tested in tests/unit/media/test_offer.c.
 */
#pragma once

#include <gst/sdp/sdp.h>

enum {
    MEDIA_KIND_VIDEO,
    MEDIA_KIND_AUDIO,
    MEDIA_N_KINDS
};

#define MEDIA_ERROR (media_error_quark())
GQuark media_error_quark(void);
enum {
    MEDIA_ERROR_BAD_OFFER,
    MEDIA_ERROR_NO_CODEC,
    MEDIA_ERROR_FAILED
};

#define MEDIA_TWCC_URI "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
#define MEDIA_AST_URI "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

typedef struct {
    gboolean present;
    char *codec; /* "VP8", "H264", "OPUS" */
    guint pt;
    guint mline;   /* index of its m-line in the offer */
    guint twcc_id; /* the transport-wide-cc header extension's id; 0: none */
    guint ast_id;  /* the abs-send-time header extension's id; 0: none */
    guint fb;      /* MEDIA_OFFER_FB_*: feedback the offer has for the codec */
} MediaOfferTrack;

/* Feedback an offer has for a codec (a=rtcp-fb:PT ... or a=rtcp-fb:* ...):
 * an answer may only keep what was offered (RFC 4585 4.2). */
enum {
    MEDIA_OFFER_FB_NACK = 1,
    MEDIA_OFFER_FB_REMB = 2
};

/* Fills TRACKS (zeroed by the caller) with the track of each kind the offer
 * SDP has in a usable codec.  FALSE with ERROR (MEDIA_ERROR_BAD_OFFER: no
 * a=ice-ufrag or a=fingerprint; MEDIA_ERROR_NO_CODEC: nothing usable);
 * TRACKS may then hold codec strings to free either way. */
gboolean media_offer_inspect(const GstSDPMessage *sdp, MediaOfferTrack tracks[MEDIA_N_KINDS],
                             GError **error);
