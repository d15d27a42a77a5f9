/* offer.c - see offer.h.  Pure SDP: no pipeline, no state. */
#include "offer.h"

#include <string.h>

GQuark
media_error_quark(void)
{
    return g_quark_from_static_string("media-error-quark");
}

static guint
offer_feedback(const GstSDPMedia *m, guint pt)
{
    guint fb = 0;
    for (guint a = 0; a < gst_sdp_media_attributes_len(m); a++) {
        const GstSDPAttribute *at = gst_sdp_media_get_attribute(m, a);
        if (g_strcmp0(at->key, "rtcp-fb") || !at->value)
            continue;
        char *rest;
        if (at->value[0] == '*')
            rest = (char *)at->value + 1;
        else if (g_ascii_strtoull(at->value, &rest, 10) != pt)
            continue;
        if (!strcmp(rest, " nack"))
            fb |= MEDIA_OFFER_FB_NACK;
        else if (!strcmp(rest, " goog-remb"))
            fb |= MEDIA_OFFER_FB_REMB;
    }
    return fb;
}

/* The id M gives the header extension URI (1-14: one-byte headers), or 0. */
static guint
offer_extension_id(const GstSDPMedia *m, const char *want)
{
    for (guint a = 0; a < gst_sdp_media_attributes_len(m); a++) {
        const GstSDPAttribute *at = gst_sdp_media_get_attribute(m, a);
        const char *uri = at->value ? strchr(at->value, ' ') : NULL;
        if (!g_strcmp0(at->key, "extmap") && uri && !strcmp(uri + 1, want)) {
            guint64 id = g_ascii_strtoull(at->value, NULL, 10);
            return id >= 1 && id <= 14 ? (guint)id : 0;
        }
    }
    return 0;
}

gboolean
media_offer_inspect(const GstSDPMessage *sdp, MediaOfferTrack tracks[MEDIA_N_KINDS], GError **error)
{
    gboolean ufrag = gst_sdp_message_get_attribute_val(sdp, "ice-ufrag") != NULL;
    gboolean fingerprint = gst_sdp_message_get_attribute_val(sdp, "fingerprint") != NULL;
    guint usable = 0;
    for (guint i = 0; i < gst_sdp_message_medias_len(sdp); i++) {
        const GstSDPMedia *m = gst_sdp_message_get_media(sdp, i);
        ufrag |= gst_sdp_media_get_attribute_val(m, "ice-ufrag") != NULL;
        fingerprint |= gst_sdp_media_get_attribute_val(m, "fingerprint") != NULL;
        const char *media = gst_sdp_media_get_media(m);
        int kind = !g_strcmp0(media, "video")   ? MEDIA_KIND_VIDEO
                   : !g_strcmp0(media, "audio") ? MEDIA_KIND_AUDIO
                                                : -1;
        /* Port 0 rejects an m-line, unless it is bundle-only (RFC 8843). */
        gboolean rejected =
            gst_sdp_media_get_port(m) == 0 && !gst_sdp_media_get_attribute_val(m, "bundle-only");
        if (kind < 0 || tracks[kind].present || rejected)
            continue;
        static const char *const prefs[][3] = {{"VP8", "H264", NULL}, {"OPUS", NULL, NULL}};
        for (guint p = 0; !tracks[kind].present && prefs[kind][p]; p++) {
            for (guint f = 0; f < gst_sdp_media_formats_len(m); f++) {
                guint pt = (guint)g_ascii_strtoull(gst_sdp_media_get_format(m, f), NULL, 10);
                /* rtpmap: "<pt> <codec>/<rate>[/<channels>]" */
                for (guint a = 0; a < gst_sdp_media_attributes_len(m); a++) {
                    const GstSDPAttribute *at = gst_sdp_media_get_attribute(m, a);
                    if (g_strcmp0(at->key, "rtpmap") || !at->value)
                        continue;
                    char *end;
                    guint apt = (guint)g_ascii_strtoull(at->value, &end, 10);
                    if (apt != pt || *end != ' ')
                        continue;
                    g_autofree char *name = g_strndup(end + 1, strcspn(end + 1, "/"));
                    if (g_ascii_strcasecmp(name, prefs[kind][p]))
                        continue;
                    if (kind == MEDIA_KIND_VIDEO && p == 1) {
                        /* H.264: only packetization-mode=1, the one browsers use. */
                        const char *fmtp = NULL;
                        for (guint b = 0; b < gst_sdp_media_attributes_len(m); b++) {
                            const GstSDPAttribute *fa = gst_sdp_media_get_attribute(m, b);
                            if (!g_strcmp0(fa->key, "fmtp") && fa->value &&
                                (guint)g_ascii_strtoull(fa->value, NULL, 10) == pt)
                                fmtp = fa->value;
                        }
                        if (!fmtp || !strstr(fmtp, "packetization-mode=1"))
                            continue;
                    }
                    tracks[kind].present = TRUE;
                    tracks[kind].mline = i;
                    tracks[kind].twcc_id = offer_extension_id(m, MEDIA_TWCC_URI);
                    tracks[kind].ast_id = offer_extension_id(m, MEDIA_AST_URI);
                    tracks[kind].fb = offer_feedback(m, pt);
                    tracks[kind].codec = g_strdup(prefs[kind][p]);
                    tracks[kind].pt = pt;
                    break;
                }
                if (tracks[kind].present)
                    break;
            }
        }
        if (tracks[kind].present)
            usable++;
    }
    if (!ufrag || !fingerprint) {
        g_set_error(error, MEDIA_ERROR, MEDIA_ERROR_BAD_OFFER, "the offer has no %s",
                    ufrag ? "a=fingerprint" : "a=ice-ufrag");
        return FALSE;
    }
    if (!usable) {
        g_set_error(error, MEDIA_ERROR, MEDIA_ERROR_NO_CODEC,
                    "the offer has no usable codec (VP8 or H.264 video, Opus audio)");
        return FALSE;
    }
    return TRUE;
}
