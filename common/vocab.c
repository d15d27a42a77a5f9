/* vocab.c - see vocab.h. */
#include "vocab.h"

#include <string.h>

static const char *const role_names[] = {"teacher", "student", "combined"};
static const char *const rec_state_names[] = {"recording", "processing", "ready",    "failed",
                                              "empty",     "deleted",    "uploading"};
static const char *const stream_names[] = {"camera", "screen"};
G_STATIC_ASSERT(G_N_ELEMENTS(role_names) == CONSULTD_ROLE_COMBINED + 1);
G_STATIC_ASSERT(G_N_ELEMENTS(stream_names) == CONSULTD_N_STREAMS);
G_STATIC_ASSERT(G_N_ELEMENTS(rec_state_names) == CONSULTD_N_REC_STATES);

int
consultd_name_index(const char *const *names, guint n, const char *name)
{
    for (guint i = 0; name && i < n; i++)
        if (!strcmp(name, names[i]))
            return (int)i;
    return -1;
}

/* NAMES[I], or "unknown" past N. */
static const char *
name_of(const char *const *names, guint n, guint i)
{
    return i < n ? names[i] : "unknown";
}

/* *OUT (an enum) set to NAME's index in NAMES[0..N); FALSE (and *OUT
 * untouched) if it is not there.  Every enum of ours is int-sized. */
static gboolean
parse_into(const char *const *names, guint n, const char *name, void *out)
{
    int i = consultd_name_index(names, n, name);
    if (i >= 0)
        memcpy(out, &i, sizeof i);
    return i >= 0;
}

G_STATIC_ASSERT(sizeof(ConsultdRole) == sizeof(int) && sizeof(ConsultdStream) == sizeof(int) &&
                sizeof(ConsultdRecState) == sizeof(int));

const char *
consultd_role_name(ConsultdRole role)
{
    return name_of(role_names, G_N_ELEMENTS(role_names), (guint)role);
}

gboolean
consultd_role_parse(const char *name, gboolean allow_combined, ConsultdRole *role)
{
    return parse_into(role_names, allow_combined ? G_N_ELEMENTS(role_names) : CONSULTD_N_ROLES,
                      name, role);
}

/* PREFIX_name() and PREFIX_parse() of enum TYPE, spelled as NAMES. */
#define VOCAB_WORDS(TYPE, PREFIX, NAMES)                                                           \
    const char *PREFIX##_name(TYPE v)                                                              \
    {                                                                                              \
        return name_of(NAMES, G_N_ELEMENTS(NAMES), (guint)v);                                      \
    }                                                                                              \
    gboolean PREFIX##_parse(const char *name, TYPE *out)                                           \
    {                                                                                              \
        return parse_into(NAMES, G_N_ELEMENTS(NAMES), name, out);                                  \
    }

VOCAB_WORDS(ConsultdStream, consultd_stream, stream_names)
VOCAB_WORDS(ConsultdRecState, consultd_rec_state, rec_state_names)

gboolean
consultd_rec_state_settled(ConsultdRecState state)
{
    return state == CONSULTD_REC_READY || state == CONSULTD_REC_FAILED ||
           state == CONSULTD_REC_EMPTY || state == CONSULTD_REC_DELETED;
}

char *
consultd_recordings_dir(const char *data_dir)
{
    return g_build_filename(data_dir, "recordings", NULL);
}

char *
consultd_recording_file(ConsultdRole role, ConsultdStream stream, guint n)
{
    const char *what =
        role != CONSULTD_ROLE_COMBINED && stream == CONSULTD_STREAM_SCREEN ? "-screen" : "";
    if (role == CONSULTD_ROLE_COMBINED || n <= 1)
        return g_strdup_printf("%s%s.webm", consultd_role_name(role), what);
    return g_strdup_printf("%s%s-%u.webm", consultd_role_name(role), what, n);
}

ConsultdStream
consultd_recording_stream(const char *file)
{
    return file && strstr(file, "-screen") ? CONSULTD_STREAM_SCREEN : CONSULTD_STREAM_CAMERA;
}

char *
consultd_recording_path(const char *recordings_dir, gint64 consultation, const char *file)
{
    char id[32];
    g_snprintf(id, sizeof id, "%" G_GINT64_FORMAT, consultation);
    return g_build_filename(recordings_dir, id, file, NULL);
}
