/* recorder.h - recording one participant of a consultation to WebM.
 *
 * A recording hangs two appsinks (video, audio) on the participant's tees in
 * the room's pipeline and feeds a pipeline of its own:
 *
 *   appsrc ! rtpvp8depay wait-for-keyframe ! webmmux ! filesink (unbuffered)
 *   appsrc ! rtpopusdepay ! opusparse ! mux.
 *
 * Each appsrc's own streaming thread carries its stream into the muxer: no
 * queues (they cost a thread each and bought nothing here).
 *
 * Its own pipeline, reached only through appsink callbacks, is the isolation:
 * a full disk, a muxer error or a stuck file system stops the recording, never
 * the live relay.  The file is written as it goes (no index), so a crash of
 * the worker loses at most what the kernel had not got; finalizing remuxes it
 * into a seekable file with cues and a correct duration.
 *
 * Lives in the media worker (and in `consultd-media --finalize` for repairs).
 * Never includes libmicrohttpd or jansson.
 */
#pragma once

#include <gst/gst.h>

typedef struct RecRecording RecRecording;

/* Reports the end of a recording on the main loop: STATE is "ready",
 * "failed" (REASON says why) or "empty" (nothing was received). */
typedef void (*RecDone)(gpointer data, const char *path, const char *state,
                        const char *reason, gint64 duration_ms, gint64 size);

/* Starts recording what reaches TEE_VIDEO and TEE_AUDIO (elements of
 * ROOM_PIPE) into PATH.  NULL and ERROR if the file cannot be created. */
RecRecording *rec_start(GstElement *room_pipe, GstElement *tee_video,
                        GstElement *tee_audio, const char *path, GError **error);
/* Wall-clock ms of the first media written, 0 while nothing has been. */
gint64 rec_started_at(RecRecording *rec);
const char *rec_path(RecRecording *rec);
/* Sends a keyframe request upstream (a recording starts on a keyframe). */
void rec_request_keyframe(RecRecording *rec);
/* Stops: detaches from the tees, sends EOS and waits up to TIMEOUT_MS for
 * it, then finalizes on a worker thread and calls DONE on the main loop.
 * Frees REC.  DONE always runs exactly once. */
void rec_stop(RecRecording *rec, guint timeout_ms, RecDone done, gpointer data);
/* Call after every room is gone (their taps detached).
 * Stops every recording still running or waiting for its EOS, without
 * finalizing (no DONE): their files stay as written, for the main process's
 * repair.  For a worker about to exit, whose main loop no longer runs: a
 * recording pipeline left playing would keep its threads, and gst_deinit()
 * waits for them forever. */
void rec_abort_all(void);

/* Remuxes IN (a WebM that may have been cut short by a crash) into OUT with
 * cues and duration, then checks OUT decodes.  Returns "ready", "empty" or
 * "failed" (with ERROR set); fills DURATION_MS and SIZE for "ready". */
const char *rec_finalize_file(const char *in, const char *out, gint64 *duration_ms,
                              gint64 *size, GError **error);

/* Composes a consultation's recordings into one file for download: videos
 * side by side (each scaled to 640x480, placed by its offset), audio mixed,
 * re-encoded to VP8/Opus WebM.  N_INPUTS files with their start offsets in
 * ms.  PROGRESS (0-100) is called from the calling thread as it goes.
 * Returns TRUE and fills DURATION_MS and SIZE, or FALSE with ERROR. */
gboolean rec_compose(const char *const *inputs, const gint64 *offsets_ms, guint n_inputs,
                     const char *out, void (*progress)(int percent, gpointer data),
                     gpointer data, gint64 *duration_ms, gint64 *size, GError **error);
