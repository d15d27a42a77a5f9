/* proto.h - the message channel between consultd and its media workers.
 *
 * Both ends are GLib programs, so messages are GVariant dictionaries (a{sv})
 * in their serialized form: typed, versionable by key, and parsed by GLib
 * rather than by a parser of ours.  The transport is a SOCK_SEQPACKET
 * socketpair: one message per packet, boundaries kept by the kernel, a peer
 * that dies shows as EOF.  Neither side includes GStreamer, libmicrohttpd or
 * jansson for this.
 *
 * The same messages, framed (a 4-byte big-endian length, then the
 * serialized a{sv}), are what the one-shot runs `consultd-media --finalize`
 * and `--compose` write to their stdout.
 *
 * Every message has "op" (s).  Types in GVariant notation; roles and states
 * are spelled as common/vocab.h names them.  A request's "req" is echoed by
 * its reply.
 *
 * main -> worker (the channel):
 *   offer     req u, session s, consultation x, role s (teacher|student),
 *             stream s (camera|screen; absent: camera),
 *             dir s (publish|receive), sdp s, rec_next u (publish: where the
 *             recording series of the role's stream goes on)
 *   trickle   session s, mline u, candidate s   (an a=candidate line)
 *   close     session s                         (the client ended it)
 *   end       consultation x                    (closed: all its media goes)
 * worker -> main (the channel):
 *   ready     pid x                             (once, when it can serve)
 *   answer    req u, session s, sdp s
 *   error     req u, session s, code s (bad_message|bad_offer|no_codec|...),
 *             message s
 *   joined    consultation x, role s, stream s, session s (media arrived)
 *   left      consultation x, role s, stream s, session s, reason s
 *             (deleted|media-timeout|no-media|...)
 *   recording consultation x, role s, file s, state s, reason s,
 *             started_at x (wall-clock ms), duration_ms x, size x
 *   stats     rooms u, sessions u, packets_in t, packets_out t,
 *             packets_lost t, keyframe_requests t, nacks_received t,
 *             retransmitted t, nacks_sent t, recovered t
 * `consultd-media --finalize FILE` -> main (stdout, framed):
 *   finalized state s (ready|empty|failed), duration_ms x, size x,
 *             lead_ms x, reason s
 * `consultd-media --compose OUT --input F@MS ...` -> main (stdout, framed):
 *   progress  percent i                         (0-100, as it goes)
 *   composed  state s (ready|failed), duration_ms x, size x, reason s
 *
 * A receiver reads every field with a default (g_variant_lookup), so a
 * missing or mistyped one reads as 0 or "" and never as anything worse.
 */
#pragma once

#include <glib.h>

#define MEDIA_MSG_MAX (256 * 1024)

typedef struct MediaChan MediaChan;
/* MSG is a{sv}, borrowed for the call. */
typedef void (*MediaChanFunc)(MediaChan *ch, GVariant *msg, gpointer data);
typedef void (*MediaChanClosed)(MediaChan *ch, gpointer data);

/* Takes FD (a SOCK_SEQPACKET socket) and watches it on the thread-default
 * main context.  ON_CLOSED runs once, on EOF or error. */
MediaChan *media_chan_new(int fd, MediaChanFunc on_msg, MediaChanClosed on_closed, gpointer data);
/* Sends MSG (a{sv}; a floating ref is consumed) without ever blocking:
 * what the socket does not take now is queued, in order, and sent when it
 * can be.  FALSE if the peer is gone, the message is over MEDIA_MSG_MAX, or
 * the queue would pass MEDIA_CHAN_QUEUE_MAX (then the channel is
 * overflowed for good: its peer is not reading). */
gboolean media_chan_send(MediaChan *ch, GVariant *msg);
#define MEDIA_CHAN_QUEUE_MAX (4 * 1024 * 1024)
/* Monotonic us since which a message has waited to be sent, 0 if none. */
gint64 media_chan_blocked_since(MediaChan *ch);
/* Monotonic us of the last message received (or of the channel's start). */
gint64 media_chan_last_received(MediaChan *ch);
gboolean media_chan_overflowed(MediaChan *ch);
void media_chan_free(MediaChan *ch); /* NULL-safe; closes the fd */

/* Builds a{sv} from "key", "type", value triples ending with NULL, e.g.
 * media_msg("answer", "req", "u", 7, "sdp", "s", text, NULL). */
GVariant *media_msg(const char *op, const char *first_key, ...) G_GNUC_NULL_TERMINATED;
/* One received packet as a{sv} in normal form (never NULL: malformed data
 * reads as an empty or partial dictionary).  Full reference. */
GVariant *media_msg_decode(const void *data, gsize len);
/* The "op" of MSG, or "" if it has none. */
const char *media_msg_op(GVariant *msg);

/* Writes MSG (a{sv}; a floating ref is consumed) to FD as one frame.  FALSE
 * if it is over MEDIA_MSG_MAX or FD failed. */
gboolean media_frame_write(int fd, GVariant *msg);
/* Takes the first complete frame off the front of BUF and returns it as
 * a{sv} in normal form (full reference); NULL while BUF holds no complete
 * frame.  A length over MEDIA_MSG_MAX empties BUF (an empty dictionary is
 * returned: the stream is not ours). */
GVariant *media_frame_pop(GByteArray *buf);
