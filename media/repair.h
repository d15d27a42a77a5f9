/* repair.h - loss repair on the relay path: what was relayed is kept for
 * retransmission, what a subscriber's RTCP asks for is read, and what a
 * publisher's packets lack is asked for again.
 *
 * The pieces are pure (no pads, no threads of their own) so that each can be
 * tested alone; room.c (subscriber side) and rtppass.c (publisher side) put
 * them on the packet path.  Who calls what, and why it is done in the relay
 * rather than by webrtcbin's rtprtxsend: docs/architecture.md, "Loss
 * repair".
 *
 * Sequence numbers are RTP's 16-bit ones; "newer" is by serial number
 * arithmetic (a difference taken as a signed 16-bit number).
 */
#pragma once

#include <gst/gst.h>

/* The fixed header fields of an RTP packet, read without mapping it through
 * GstRTPBuffer (which validates the whole packet): what the relay path
 * needs per packet.  FALSE if BUF is not RTP version 2. */
typedef struct {
    guint8 pt;
    guint16 seq;
    guint32 ssrc;
} MediaRtpHead;

gboolean media_rtp_head(GstBuffer *buf, MediaRtpHead *out);

/* ---------------------------------------------------------- history */

/* The packets last relayed to one subscriber, by sequence number: a ring of
 * MEDIA_HISTORY_PACKETS.  At 600 kbit/s (70 packets a second) that is 7 s,
 * at 2.5 Mbit/s 2 s: more than the RTT plus the receiver's patience. */
#define MEDIA_HISTORY_PACKETS 512

typedef struct MediaHistory MediaHistory;

MediaHistory *media_history_new(void);
void media_history_free(MediaHistory *h); /* NULL-safe; drops every packet */
/* Keeps a ref on BUF (an RTP packet) under its sequence number, replacing
 * whatever had the same slot.  Packets that are not RTP are ignored. */
void media_history_put(MediaHistory *h, GstBuffer *buf);
/* The packet with sequence number SEQ, a new ref, or NULL if it is no longer
 * (or never was) kept. */
GstBuffer *media_history_get(MediaHistory *h, guint16 seq);

/* ---------------------------------------------------------- feedback */

#define MEDIA_FEEDBACK_MAX_NACKS 256

/* What one compound RTCP packet from a receiver asks of a sender. */
typedef struct {
    guint plis, firs; /* keyframe requests */
    guint n_nacks;    /* sequence numbers in NACKS (the rest dropped) */
    guint16 nacks[MEDIA_FEEDBACK_MAX_NACKS];
    guint64 remb_bps; /* 0: no REMB in it */
} MediaFeedback;

/* Reads the PLI, FIR, generic NACK and REMB messages in BUF (a compound RTCP
 * packet, unencrypted).  FALSE, and OUT zeroed, if BUF is not valid RTCP. */
gboolean media_feedback_scan(GstBuffer *buf, MediaFeedback *out);

/* Appends to BUF (a compound RTCP packet being built, writable) a REMB from
 * SENDER_SSRC telling the sender of MEDIA_SSRC to stay under BPS.  FALSE,
 * BUF unchanged, if it does not fit. */
gboolean media_remb_add(GstBuffer *buf, guint32 sender_ssrc, guint32 media_ssrc, guint64 bps);

/* ---------------------------------------------------------- losses */

/* Which packets of one incoming stream are missing and when to ask for each
 * (again): a NACK as soon as a gap is seen, repeated while unanswered every
 * 1.5 round trips (measured from the answers to first NACKs, between
 * MEDIA_LOSS_RETRY_MIN_US and _MAX_US), at most MEDIA_LOSS_TRIES times, and forgotten after
 * MEDIA_LOSS_GIVE_UP_US (the receivers will have asked for a keyframe by
 * then).  A jump of more than MEDIA_LOSS_MAX_GAP packets (a new stream, a
 * long outage) restarts the count instead of asking for all of it. */
#define MEDIA_LOSS_SLOTS 128
#define MEDIA_LOSS_TRIES 8
#define MEDIA_LOSS_MAX_GAP 100
#define MEDIA_LOSS_GIVE_UP_US (1000 * 1000)
#define MEDIA_LOSS_RETRY_MIN_US (30 * 1000)
#define MEDIA_LOSS_RETRY_MAX_US (300 * 1000)

typedef struct {
    guint16 seq;
    guint8 tries;
    gboolean used;
    gint64 first_us, next_us;
} MediaLossSlot;

typedef struct {
    gboolean started;
    guint16 max_seq; /* newest sequence number seen */
    gint64 retry_us; /* between two NACKs of one packet */
    gint64 rtt_us;   /* NACK to retransmission, smoothed; 0: none yet */
    MediaLossSlot slot[MEDIA_LOSS_SLOTS];
    guint missing;                       /* slots in use */
    guint64 nacked, recovered, given_up; /* counts, for the worker's metrics */
} MediaLoss;

/* RETRY_US: how long an answer may take until one has been measured. */
void media_loss_init(MediaLoss *l, gint64 retry_us);
/* A packet SEQ arrived at NOW_US.  Fills OUT (room for MAX) with the
 * sequence numbers to NACK now and returns how many. */
guint media_loss_packet(MediaLoss *l, guint16 seq, gint64 now_us, guint16 *out, guint max);

/* ---------------------------------------------------------- throttle */

/* Whether an action last allowed at *LAST_US may happen again at NOW_US,
 * INTERVAL_US later at the earliest; if so *LAST_US becomes NOW_US.  Atomic:
 * any thread. */
gboolean media_throttle(gint64 *last_us, gint64 now_us, gint64 interval_us);
