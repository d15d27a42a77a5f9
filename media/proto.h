/* proto.h - the message channel between consultd and its media workers.
 *
 * Both ends are GLib programs, so messages are GVariant dictionaries (a{sv})
 * in their serialized form: typed, versionable by key, and parsed by GLib
 * rather than by a parser of ours.  The transport is a SOCK_SEQPACKET
 * socketpair: one message per packet, boundaries kept by the kernel, a peer
 * that dies shows as EOF.  Neither side includes GStreamer, libmicrohttpd or
 * jansson for this.
 *
 * Messages (every request carries "req", echoed by its reply):
 *   main -> worker: offer {req, session, consultation, role, dir, sdp}
 *                   trickle {session, mline, candidate}
 *                   close {session}   end {consultation}
 *   worker -> main: answer {req, session, sdp}
 *                   error {req, session, code, message}
 *                   joined/left {session, consultation, role, reason}
 *                   stats {sessions, rooms, packets_in, packets_out, ...}
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
MediaChan *media_chan_new(int fd, MediaChanFunc on_msg, MediaChanClosed on_closed,
                          gpointer data);
/* Sends MSG (a{sv}; a floating ref is consumed).  FALSE if the peer is gone
 * or the message is over MEDIA_MSG_MAX. */
gboolean media_chan_send(MediaChan *ch, GVariant *msg);
void media_chan_free(MediaChan *ch); /* NULL-safe; closes the fd */

/* Builds a{sv} from "key", "type", value triples ending with NULL, e.g.
 * media_msg("answer", "req", "u", 7, "sdp", "s", text, NULL). */
GVariant *media_msg(const char *op, const char *first_key, ...) G_GNUC_NULL_TERMINATED;
/* One received packet as a{sv} in normal form (never NULL: malformed data
 * reads as an empty or partial dictionary).  Full reference. */
GVariant *media_msg_decode(const void *data, gsize len);
/* The "op" of MSG, or "" if it has none. */
const char *media_msg_op(GVariant *msg);
