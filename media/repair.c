/* repair.c - see repair.h. */
#include "repair.h"

#include <gst/rtp/gstrtcpbuffer.h>
#include <gst/rtp/gstrtpbuffer.h>
#include <string.h>

/* ---------------------------------------------------------- history */

typedef struct {
    GstBuffer *buf;
    guint16 seq;
} HistorySlot;

struct MediaHistory {
    HistorySlot slot[MEDIA_HISTORY_PACKETS];
};

MediaHistory *
media_history_new(void)
{
    return g_new0(MediaHistory, 1);
}

void
media_history_free(MediaHistory *h)
{
    if (!h)
        return;
    for (guint i = 0; i < MEDIA_HISTORY_PACKETS; i++)
        if (h->slot[i].buf)
            gst_buffer_unref(h->slot[i].buf);
    g_free(h);
}

gboolean
media_rtp_head(GstBuffer *buf, MediaRtpHead *out)
{
    guint8 head[12];
    if (gst_buffer_extract(buf, 0, head, 12) != 12 || (head[0] >> 6) != 2)
        return FALSE;
    out->pt = head[1] & 0x7f;
    out->seq = GST_READ_UINT16_BE(head + 2);
    out->ssrc = GST_READ_UINT32_BE(head + 8);
    return TRUE;
}

void
media_history_put(MediaHistory *h, GstBuffer *buf)
{
    MediaRtpHead rtp;
    if (!media_rtp_head(buf, &rtp))
        return;
    HistorySlot *s = &h->slot[rtp.seq % MEDIA_HISTORY_PACKETS];
    if (s->buf)
        gst_buffer_unref(s->buf);
    s->buf = gst_buffer_ref(buf);
    s->seq = rtp.seq;
}

GstBuffer *
media_history_get(MediaHistory *h, guint16 seq)
{
    HistorySlot *s = &h->slot[seq % MEDIA_HISTORY_PACKETS];
    return s->buf && s->seq == seq ? gst_buffer_ref(s->buf) : NULL;
}

/* ---------------------------------------------------------- feedback */

static void
add_nacks(MediaFeedback *out, const guint8 *fci, guint words)
{
    /* Generic NACK (RFC 4585 6.2.1): PID, then a bitmask of the 16 packets
     * after it. */
    for (guint w = 0; w < words; w++) {
        const guint8 *e = fci + 4 * w;
        guint16 pid = (guint16)((e[0] << 8) | e[1]);
        guint16 blp = (guint16)((e[2] << 8) | e[3]);
        for (guint bit = 0; bit <= 16; bit++) {
            if (bit > 0 && !(blp & (1u << (bit - 1))))
                continue;
            if (out->n_nacks == MEDIA_FEEDBACK_MAX_NACKS)
                return;
            out->nacks[out->n_nacks++] = (guint16)(pid + bit);
        }
    }
}

/* REMB (draft-alvestrand-rmcat-remb): "REMB", the number of SSRCs, a 6-bit
 * exponent and an 18-bit mantissa. */
static void
read_remb(MediaFeedback *out, const guint8 *fci, guint words)
{
    if (words < 2 || memcmp(fci, "REMB", 4))
        return;
    guint exp = fci[5] >> 2;
    guint64 mantissa = ((guint64)(fci[5] & 3) << 16) | ((guint64)fci[6] << 8) | fci[7];
    out->remb_bps = exp > 46 ? G_MAXUINT64 : mantissa << exp;
}

gboolean
media_feedback_scan(GstBuffer *buf, MediaFeedback *out)
{
    memset(out, 0, sizeof *out);
    GstRTCPBuffer rtcp = GST_RTCP_BUFFER_INIT;
    if (!gst_rtcp_buffer_validate_reduced(buf) || !gst_rtcp_buffer_map(buf, GST_MAP_READ, &rtcp))
        return FALSE;
    GstRTCPPacket p;
    for (gboolean more = gst_rtcp_buffer_get_first_packet(&rtcp, &p); more;
         more = gst_rtcp_packet_move_to_next(&p)) {
        GstRTCPType type = gst_rtcp_packet_get_type(&p);
        if (type != GST_RTCP_TYPE_PSFB && type != GST_RTCP_TYPE_RTPFB)
            continue;
        GstRTCPFBType fb = gst_rtcp_packet_fb_get_type(&p);
        const guint8 *fci = gst_rtcp_packet_fb_get_fci(&p);
        guint words = gst_rtcp_packet_fb_get_fci_length(&p);
        if (type == GST_RTCP_TYPE_PSFB && fb == GST_RTCP_PSFB_TYPE_PLI)
            out->plis++;
        else if (type == GST_RTCP_TYPE_PSFB && fb == GST_RTCP_PSFB_TYPE_FIR)
            out->firs++;
        else if (type == GST_RTCP_TYPE_PSFB && fb == GST_RTCP_PSFB_TYPE_AFB && fci)
            read_remb(out, fci, words);
        else if (type == GST_RTCP_TYPE_RTPFB && fb == GST_RTCP_RTPFB_TYPE_NACK && fci)
            add_nacks(out, fci, words);
    }
    gst_rtcp_buffer_unmap(&rtcp);
    return TRUE;
}

gboolean
media_remb_add(GstBuffer *buf, guint32 sender_ssrc, guint32 media_ssrc, guint64 bps)
{
    GstRTCPBuffer rtcp = GST_RTCP_BUFFER_INIT;
    if (!gst_rtcp_buffer_map(buf, GST_MAP_READWRITE, &rtcp))
        return FALSE;
    GstRTCPPacket p;
    gboolean added = gst_rtcp_buffer_add_packet(&rtcp, GST_RTCP_TYPE_PSFB, &p);
    gboolean ok = added;
    if (ok) {
        gst_rtcp_packet_fb_set_type(&p, GST_RTCP_PSFB_TYPE_AFB);
        gst_rtcp_packet_fb_set_sender_ssrc(&p, sender_ssrc);
        gst_rtcp_packet_fb_set_media_ssrc(&p, 0);
        ok = gst_rtcp_packet_fb_set_fci_length(&p, 3);
    }
    if (ok) {
        /* An 18-bit mantissa and the smallest exponent that fits. */
        guint exp = 0;
        while ((bps >> exp) > 0x3ffff)
            exp++;
        guint32 mantissa = (guint32)(bps >> exp);
        guint8 *fci = gst_rtcp_packet_fb_get_fci(&p);
        memcpy(fci, "REMB", 4);
        fci[4] = 1;
        fci[5] = (guint8)((exp << 2) | (mantissa >> 16));
        fci[6] = (guint8)(mantissa >> 8);
        fci[7] = (guint8)mantissa;
        GST_WRITE_UINT32_BE(fci + 8, media_ssrc);
    } else if (added) {
        gst_rtcp_packet_remove(&p);
    }
    gst_rtcp_buffer_unmap(&rtcp);
    return ok;
}

/* ---------------------------------------------------------- losses */

void
media_loss_init(MediaLoss *l, gint64 retry_us)
{
    memset(l, 0, sizeof *l);
    l->retry_us = retry_us;
}

static MediaLossSlot *
loss_find(MediaLoss *l, guint16 seq)
{
    MediaLossSlot *s = &l->slot[seq % MEDIA_LOSS_SLOTS];
    return s->used && s->seq == seq ? s : NULL;
}

static void
loss_forget_all(MediaLoss *l)
{
    for (guint i = 0; i < MEDIA_LOSS_SLOTS; i++)
        l->slot[i].used = FALSE;
    l->missing = 0;
}

guint
media_loss_packet(MediaLoss *l, guint16 seq, gint64 now_us, guint16 *out, guint max)
{
    guint n = 0;
    if (!l->started) {
        l->started = TRUE;
        l->max_seq = seq;
        return 0;
    }
    gint16 ahead = (gint16)(guint16)(seq - l->max_seq);
    if (ahead > MEDIA_LOSS_MAX_GAP || ahead < -(gint)MEDIA_LOSS_SLOTS * 4) {
        /* A new stream or a long outage: start again from here. */
        loss_forget_all(l);
        l->max_seq = seq;
        return 0;
    }
    if (ahead > 0) {
        for (guint16 s = (guint16)(l->max_seq + 1); s != seq; s++) {
            MediaLossSlot *slot = &l->slot[s % MEDIA_LOSS_SLOTS];
            if (slot->used)
                l->given_up++; /* pushed out, 128 packets later */
            else
                l->missing++;
            *slot = (MediaLossSlot){.seq = s,
                                    .used = TRUE,
                                    .tries = 1,
                                    .first_us = now_us,
                                    .next_us = now_us + l->retry_us};
            l->nacked++;
            if (n < max)
                out[n++] = s;
        }
        l->max_seq = seq;
    } else {
        MediaLossSlot *slot = loss_find(l, seq);
        if (slot) {
            /* An answer to the first NACK measures the round trip. */
            if (slot->tries == 1) {
                gint64 rtt = now_us - slot->first_us;
                l->rtt_us = l->rtt_us ? (7 * l->rtt_us + rtt) / 8 : rtt;
                l->retry_us = CLAMP(l->rtt_us * 3 / 2 + 10000, MEDIA_LOSS_RETRY_MIN_US,
                                    MEDIA_LOSS_RETRY_MAX_US);
            }
            slot->used = FALSE;
            l->missing--;
            l->recovered++;
        }
    }
    /* Asked before, still missing: again, or give up. */
    for (guint i = 0; l->missing && i < MEDIA_LOSS_SLOTS; i++) {
        MediaLossSlot *slot = &l->slot[i];
        if (!slot->used || slot->next_us > now_us)
            continue;
        if (slot->tries >= MEDIA_LOSS_TRIES || now_us - slot->first_us > MEDIA_LOSS_GIVE_UP_US) {
            slot->used = FALSE;
            l->missing--;
            l->given_up++;
            continue;
        }
        slot->tries++;
        slot->next_us = now_us + l->retry_us;
        if (n < max)
            out[n++] = slot->seq;
    }
    return n;
}

/* ---------------------------------------------------------- throttle */

gboolean
media_throttle(gint64 *last_us, gint64 now_us, gint64 interval_us)
{
    gint64 last = __atomic_load_n(last_us, __ATOMIC_RELAXED);
    if (last && now_us - last < interval_us)
        return FALSE;
    return __atomic_compare_exchange_n(last_us, &last, now_us, FALSE, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED);
}
