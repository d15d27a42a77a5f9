/* recorder.h - recording one participant of a consultation to WebM.
 *
 * While the consultation runs, a recording is a journal (journal.h): a
 * buffer probe on each of the participant's two tees (video, audio) in the
 * room's pipeline copies every packet, from the first video keyframe on,
 * into memory, and the Recorder's writer thread (one per worker process)
 * appends it to the file.
 * No depayloader, muxer or thread per recording on the live path: that
 * halved what recording costs (docs/benchmarks.md).
 *
 * The journal is the isolation: a full disk, a failed write or a stuck file
 * system stalls or stops the writer, never the live relay (the probes only
 * copy into memory, and drop once JRN_PENDING_MAX is waiting).  A crash of
 * the worker loses at most the last JRN_FLUSH_MS and whatever the kernel
 * had not got.
 *
 * Finalizing turns the journal into a seekable WebM with cues and a correct
 * duration: packets put back in order per track (a small window), retimed
 * from their RTP timestamps (anchored on the least delay of the first
 * seconds, then following the arrival's drift slowly), shifted so the first
 * video frame is at 0 (sound before it dropped), depayloaded
 * (rtpvp8depay, rtpopusdepay ! opusparse) and muxed.  It runs on a thread
 * of its own, after the recording ends or, for files a crash left, in
 * `consultd-media --finalize` at the main process's next start.
 *
 * Lives in the media worker.  Never includes libmicrohttpd or jansson.
 */
#pragma once

#include <gst/gst.h>

#include "vocab.h"

/* A process's recorder: its journal writer and the recordings it has
 * going, so that an exiting worker can leave them for repair. */
typedef struct Recorder Recorder;
Recorder *rec_recorder_new(void);

typedef struct RecRecording RecRecording;

/* Reports the end of a recording on the main loop: STATE is ready, failed
 * (REASON says why) or empty (nothing was received).  LEAD_MS:
 * how long before rec_started_at() the file's content begins (positive: its
 * first packets came late, a sender that held them back while connecting;
 * negative by a few ms: the first frame came after the journal's start). */
typedef void (*RecDone)(gpointer data, const char *path, ConsultdRecState state, const char *reason,
                        gint64 duration_ms, gint64 size, gint64 lead_ms);

/* Starts recording what reaches TEE_VIDEO and TEE_AUDIO (tees of a room's
 * pipeline) into a journal at PATH.  NULL and ERROR if the file cannot be
 * created. */
RecRecording *rec_start(Recorder *rc, GstElement *tee_video, GstElement *tee_audio,
                        const char *path, GError **error);
/* Wall-clock ms of the first media written, 0 while nothing has been. */
gint64 rec_started_at(RecRecording *rec);
const char *rec_path(RecRecording *rec);
/* Sends a keyframe request upstream (a recording starts on a keyframe). */
void rec_request_keyframe(RecRecording *rec);
/* Stops: detaches from the tees, waits up to TIMEOUT_MS for the journal to
 * be written out, then finalizes on a worker thread and calls DONE on the
 * main loop.  Frees REC.  DONE always runs exactly once. */
void rec_stop(RecRecording *rec, guint timeout_ms, RecDone done, gpointer data);
/* For a worker about to exit, whose main loop no longer runs; call after
 * every room is gone.  Frees RC.  Stops every recording still running or being written
 * out, without finalizing (no DONE): their journals stay as written, for
 * the main process's repair.  Then waits a few seconds for finalizations
 * under way (gst_deinit() would wait for their pipelines forever). */
void rec_recorder_free(Recorder *rc); /* NULL-safe */

/* Turns IN (a journal, possibly cut short by a crash; or a WebM written
 * before journals, remuxed) into a WebM at OUT with cues and duration, then
 * checks OUT decodes.  Returns ready, empty or failed (with
 * ERROR set); fills DURATION_MS, SIZE and LEAD_MS (RecDone) for ready. */
ConsultdRecState rec_finalize_file(const char *in, const char *out, gint64 *duration_ms,
                                   gint64 *size, gint64 *lead_ms, GError **error);

/* Composes a consultation's recordings into one file for download, each
 * placed on the timeline by its offset, audio mixed, re-encoded to
 * VP8/Opus WebM.  Without a shared screen the cameras are side by side
 * (640x480 each); with one (SCREENS[i] TRUE; SCREENS may be NULL) the
 * picture is 1280x720, the screens large on the left (960x720, their
 * aspect kept) and the cameras small on the right (320x240, one above the
 * other).  N_INPUTS files with their start offsets in ms.  PROGRESS
 * (0-100) is called from the calling thread as it goes.  Returns TRUE and
 * fills DURATION_MS and SIZE, or FALSE with ERROR. */
gboolean rec_compose(const char *const *inputs, const gint64 *offsets_ms, const gboolean *screens,
                     guint n_inputs, const char *out, void (*progress)(int percent, gpointer data),
                     gpointer data, gint64 *duration_ms, gint64 *size, GError **error);
