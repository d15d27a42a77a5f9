/* journal.h - a recording as it is made: the participant's RTP packets,
 * appended to a file as they arrive.
 *
 * File format (all integers big-endian):
 *
 *   header   8 bytes  "CDJRNL1\n"
 *   record  12 bytes  type (1), track (1), length (2), pts (8, signed ns)
 *           + LENGTH bytes
 *
 *   type 1  caps of TRACK (a GstCaps string); comes before its packets
 *   type 2  one RTP packet of TRACK, PTS its arrival on the recording's
 *           timeline (0 = the first video keyframe)
 *
 * Nothing else: no index, no trailer.  A file cut short by a crash ends in
 * at most one incomplete record, which a reader ignores; everything before
 * it is good.  That is the crash safety, and why the writer never seeks.
 *
 * Writing: jrn_append() runs on a streaming thread and only copies into
 * memory.  One writer thread per process (while any journal is open) writes
 * every journal out each JRN_FLUSH_MS (sooner past JRN_FLUSH_BYTES) with
 * plain write()s, so a slow or full disk stalls that thread alone, never
 * the live relay.  A journal
 * holding JRN_PENDING_MAX bytes not yet written drops what comes next and
 * counts it.
 *
 * Lives in the media worker.  Never includes libmicrohttpd or jansson.
 */
#pragma once

#include <glib.h>
#include <stdio.h>

#define JRN_MAGIC "CDJRNL1\n"
#define JRN_MAGIC_LEN 8
#define JRN_RECORD_HEADER 12
#define JRN_FLUSH_MS 100
#define JRN_FLUSH_BYTES (256 * 1024)
#define JRN_PENDING_MAX (8 * 1024 * 1024)

enum {
    JRN_CAPS = 1,
    JRN_RTP = 2
};

typedef struct Journal Journal;

/* The writer: one thread, started by the first open journal and ended when
 * none is left, that writes every journal's pending bytes out.  A process
 * makes one (the recorder's, rec_recorder_new()) and hands it to
 * jrn_open(); each journal keeps a reference, so the owner may drop its
 * own at any time. */
typedef struct JrnWriter JrnWriter;
JrnWriter *jrn_writer_new(void);
void jrn_writer_unref(JrnWriter *w); /* NULL-safe */

/* Called on CTX's loop once a closed journal is written out and its file
 * closed.  ERROR is the first write error, NULL if none. */
typedef void (*JrnClosed)(gpointer data, const char *error);

/* Creates PATH (truncating) and writes the header; W writes the rest.  NULL
 * and ERROR if the file cannot be created. */
Journal *jrn_open(JrnWriter *w, const char *path, GError **error);
void jrn_unref(Journal *j);
/* Any thread.  FALSE when dropped: closed, failed, or too much pending. */
gboolean jrn_append(Journal *j, guint8 type, guint8 track, gint64 pts, const guint8 *data,
                    gsize len);
/* No more appends; the writer writes what is pending, closes the file and
 * calls CLOSED on CTX (the caller's thread-default context if NULL). */
void jrn_close(Journal *j, JrnClosed closed, gpointer data);
/* For a process about to exit: writes what is pending now, from the
 * calling thread, and closes the file (no callback).  Waits at most
 * TIMEOUT_MS for a write the writer thread has in progress. */
void jrn_abort(Journal *j, guint timeout_ms);
guint64 jrn_dropped(Journal *j);

/* Reading (any thread).  jrn_next() returns TRUE with a record, FALSE at the
 * end of the file or at an incomplete or malformed record. */
typedef struct {
    FILE *f;
    guint8 *buf;
    gsize cap;
} JrnReader;

gboolean jrn_reader_open(JrnReader *r, const char *path);
gboolean jrn_next(JrnReader *r, guint8 *type, guint8 *track, gint64 *pts, const guint8 **data,
                  gsize *len);
void jrn_reader_close(JrnReader *r);
/* TRUE if PATH starts with the journal header. */
gboolean jrn_is_journal(const char *path);
