/* stream.h - GET /api/events: the live Server-Sent Events streams, and
 * teacher presence as their streams show it.
 */
#pragma once

#include "http/http.h"

SigStreams *sig_streams_new(SigApp *app); /* after sig_events_new() */
void sig_streams_free(SigStreams *st);    /* NULL-safe; streams must be closed */

/* Ends every stream (at shutdown) so their connections can close. */
void sig_streams_close_all(SigApp *app);
/* Revocation: ends the streams opened with session TOKEN_HASH (logout)... */
void sig_streams_close_session(SigApp *app, const char *token_hash);
/* ...or all of USER's but those of session EXCEPT_TOKEN_HASH (NULL: all;
 * deletion, a password change). */
void sig_streams_close_user(SigApp *app, gint64 user, const char *except_token_hash);
guint sig_streams_count(SigApp *app);

/* Presence tracking by stream: a teacher was seen now (went online). */
void sig_streams_teacher_seen(SigApp *app, gint64 teacher);
/* TRUE if TEACHER has no open stream and was last seen GRACE_S ago. */
gboolean sig_streams_teacher_gone(SigApp *app, gint64 teacher, gint64 grace_s);
/* Teachers with an events stream open on this node now. */
GArray *sig_streams_teachers_present(SigApp *app);
/* The students with an events stream here (gint64; one per stream). */
GArray *sig_streams_students_present(SigApp *app);

void sig_h_events(SigReq *r);
