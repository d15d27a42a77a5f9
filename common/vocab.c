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

const char *
consultd_role_name(ConsultdRole role)
{
    return (guint)role < G_N_ELEMENTS(role_names) ? role_names[role] : "unknown";
}

int
consultd_name_index(const char *const *names, guint n, const char *name)
{
    for (guint i = 0; name && i < n; i++)
        if (!strcmp(name, names[i]))
            return (int)i;
    return -1;
}

gboolean
consultd_role_parse(const char *name, gboolean allow_combined, ConsultdRole *role)
{
    int i = consultd_name_index(role_names,
                                allow_combined ? G_N_ELEMENTS(role_names) : CONSULTD_N_ROLES, name);
    if (i >= 0)
        *role = (ConsultdRole)i;
    return i >= 0;
}

const char *
consultd_stream_name(ConsultdStream stream)
{
    return (guint)stream < G_N_ELEMENTS(stream_names) ? stream_names[stream] : "unknown";
}

gboolean
consultd_stream_parse(const char *name, ConsultdStream *stream)
{
    int i = consultd_name_index(stream_names, G_N_ELEMENTS(stream_names), name);
    if (i >= 0)
        *stream = (ConsultdStream)i;
    return i >= 0;
}

const char *
consultd_rec_state_name(ConsultdRecState state)
{
    return (guint)state < G_N_ELEMENTS(rec_state_names) ? rec_state_names[state] : "unknown";
}

gboolean
consultd_rec_state_parse(const char *name, ConsultdRecState *state)
{
    int i = consultd_name_index(rec_state_names, G_N_ELEMENTS(rec_state_names), name);
    if (i >= 0)
        *state = (ConsultdRecState)i;
    return i >= 0;
}

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
