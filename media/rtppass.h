/* rtppass.h - what a publisher's rtpbin gets instead of a jitterbuffer.
 *
 * A relay does not need one: every subscriber (a browser, any WHEP client)
 * has its own, and the recorder orders and retimes packets when it
 * finalizes (recorder.h).  rtpjitterbuffer costs two threads per track
 * (its output task and its timer), a thread hop per packet and its
 * per-packet bookkeeping; this element pushes each packet on in the thread
 * that received it.  Measured in docs/benchmarks.md.
 *
 * It has the properties rtpbin and webrtcbin use on a jitterbuffer
 * ("latency", "do-retransmission" set, "stats" read by get-stats) so
 * neither warns; the settings do nothing, the stats count pushed packets.
 * No NACKs are generated here (none are negotiated: track_caps() in room.c).
 */
#pragma once

#include <gst/gst.h>

G_DECLARE_FINAL_TYPE(MediaRtpPass, media_rtp_pass, MEDIA, RTP_PASS, GstElement)

/* A new floating element, for rtpbin's "request-jitterbuffer". */
GstElement *media_rtp_pass_new(void);
