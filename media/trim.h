/* trim.h - what webrtcbin puts on the packet path that only passes packets
 * through here, and how it is taken out.
 *
 * webrtcbin 1.22 is built for any use: it stores received packets for FEC,
 * runs every received packet through a capsfilter and a queue (a thread
 * hop), and sends every packet through two clocksyncs and a FEC/RED
 * encoder bin.  A relay whose answers negotiate one payload type per track
 * (room.c's track_caps()), no RTX, RED or FEC, needs none of it.  Each step here was
 * measured (docs/benchmarks.md, "Levers tried").
 *
 * If this project ever negotiates RTX, RED or ULPFEC, media_trim_rtpbin()
 * and media_trim_send_path() have to go.
 */
#pragma once

#include <gst/gst.h>

/* Before WEBRTC is in a pipeline: no RTX/RED/FEC elements in its rtpbin,
 * no packet storage; publishers (PUBLISH) get no jitterbuffer but an
 * rtppass (rtppass.h) that NACKs the missing packets of payload type
 * NACK_PT (-1: none). */
void media_trim_rtpbin(GstElement *webrtc, gboolean publish, int nack_pt);

/* Once a publisher's WEBRTC is connected (ICE and DTLS): packets go from
 * nicesrc on into SRTP, not through the receive bin's capsfilter, queue
 * and its thread, nor rtpbin's storage; then libnice hands them to one of
 * the readers, which pushes each on as it comes, instead of to nicesrc's
 * thread.  Any thread; the switches happen on the next received packets. */
void media_trim_receive_queue(GstElement *webrtc);

typedef enum {
    MEDIA_TRIM_LATER, /* webrtcbin has not built the send path yet */
    MEDIA_TRIM_DONE,
    MEDIA_TRIM_NEVER /* not the path this code knows: left as it is */
} MediaTrimResult;

/* SINK, a webrtcbin sink pad whose only data comes from the caller's
 * thread: links it straight to the RTP funnel, past clocksync and the
 * FEC/RED encoder bin, and splices dtlssrtpenc's clocksync out.  Call from
 * the thread that pushes into SINK, between two pushes, until it returns
 * DONE or NEVER. */
MediaTrimResult media_trim_send_path(GstPad *sink);

/* SRC, a source pad linked through ghost pads (each costs a packet a pad
 * push, a proxy chain and three object references), is linked straight to
 * the pad past them.  Only from the one thread that pushes out of SRC,
 * between two pushes.  Whether it did; SRC as it was if not. */
gboolean media_trim_skip_ghosts(GstPad *src);

/* The first element in WEBRTC, at any depth, made by FACTORY whose parent
 * is made by PARENT_FACTORY; a new ref or NULL. */
GstElement *media_webrtc_find(GstElement *webrtc, const char *factory, const char *parent_factory);
