/* vocab.h - the words both processes share: who takes part in a
 * consultation, what state a recording is in, what its files are called
 * and where they live.
 *
 * Enums in C; the names below are how they are spelled at the edges only
 * (JSON, SQL, media/proto.h messages, file names).  GLib only: consultd,
 * consultd-media and storage/ all link this, and it includes nothing else
 * of ours (tests/check_includes.py).
 */
#pragma once

#include <glib.h>

/* A participant of a consultation; recordings also have a combined one. */
typedef enum {
    CONSULTD_ROLE_TEACHER,
    CONSULTD_ROLE_STUDENT,
    CONSULTD_N_ROLES,                          /* participants: teacher, student */
    CONSULTD_ROLE_COMBINED = CONSULTD_N_ROLES, /* recordings only: both in one file */
} ConsultdRole;

/* "teacher", "student", "combined"; "unknown" for anything else. */
const char *consultd_role_name(ConsultdRole role);
/* FALSE (and *ROLE untouched) unless NAME is one of the names; a
 * participant role only unless ALLOW_COMBINED. */
gboolean consultd_role_parse(const char *name, gboolean allow_combined, ConsultdRole *role);

/* What a participant publishes: the camera (with the microphone) or a
 * shared screen, each its own WHIP session, relay and recording. */
typedef enum {
    CONSULTD_STREAM_CAMERA,
    CONSULTD_STREAM_SCREEN,
    CONSULTD_N_STREAMS,
} ConsultdStream;

/* "camera", "screen"; "unknown" for anything else. */
const char *consultd_stream_name(ConsultdStream stream);
/* FALSE (and *STREAM untouched) unless NAME is one of the names. */
gboolean consultd_stream_parse(const char *name, ConsultdStream *stream);

/* A recording's life: recording -> processing -> ready | failed | empty,
 * and ready -> deleted by retention; with a recording store, processing ->
 * uploading -> ready (docs/recording.md). */
typedef enum {
    CONSULTD_REC_RECORDING,
    CONSULTD_REC_PROCESSING,
    CONSULTD_REC_READY,
    CONSULTD_REC_FAILED,
    CONSULTD_REC_EMPTY,
    CONSULTD_REC_DELETED,
    CONSULTD_REC_UPLOADING, /* finalized on the node's disk, on its way to the store */
    CONSULTD_N_REC_STATES,
} ConsultdRecState;

const char *consultd_rec_state_name(ConsultdRecState state);
gboolean consultd_rec_state_parse(const char *name, ConsultdRecState *state);
/* TRUE once nothing more will be written to the file (ready, failed,
 * empty, deleted). */
gboolean consultd_rec_state_settled(ConsultdRecState state);

/* The index of NAME in NAMES[0..N), or -1 (NAME NULL included): how every
 * name of this vocabulary, and storage's, is read back. */
int consultd_name_index(const char *const *names, guint n, const char *name);

/* The recordings directory under a data dir: <data_dir>/recordings. */
char *consultd_recordings_dir(const char *data_dir);
/* A participant's N-th recording file of a consultation (N from 1):
 * "teacher.webm", then "teacher-2.webm", ... (a rejoin never overwrites);
 * a shared screen's "teacher-screen.webm", "teacher-screen-2.webm", ...;
 * ROLE combined gives "combined.webm". */
char *consultd_recording_file(ConsultdRole role, ConsultdStream stream, guint n);
/* The stream a recording file of ours holds (by its name). */
ConsultdStream consultd_recording_stream(const char *file);
/* Where FILE of CONSULTATION lives: <recordings_dir>/<consultation>/<file>;
 * FILE NULL gives the consultation's directory. */
char *consultd_recording_path(const char *recordings_dir, gint64 consultation, const char *file);
