/* store_recordings.c - recording files and their states.
 *
 * State machine of a recording file (one row per file):
 *
 *     recording --> processing --> ready | failed | empty
 *     recording --> ready | failed | empty        (repaired after a crash)
 *
 * Terminal states are never left; a report that would leave one is ignored
 * (a late message from a worker that was already given up on).  Becoming
 * ready appends recording.ready, which feeds the my page read model and the
 * notifications; becoming failed appends recording.failed.
 */
#include "store_events.h"

#include <string.h>

/* A ready recording may later be deleted by retention:
 *     ready --retention--> deleted      (recording.deleted) */

/* Whether the stored state named ST is settled (an unknown one is not). */
static gboolean
terminal(const char *st)
{
    ConsultdRecState v;
    return consultd_rec_state_parse(st, &v) && consultd_rec_state_settled(v);
}

void
store_recording_free(StoreRecording *r)
{
    if (!r)
        return;
    g_free(r->file);
    g_free(r->reason);
    g_free(r->node_id);
    g_free(r->store);
    g_free(r->upload_id);
    g_free(r);
}

#define REC_COLS                                                                                   \
    "id, consultation_id, role, file, state, reason, started_at, duration_ms, size,"               \
    " offset_ms, created_at, node_id, store, upload_id"

static StoreRecording *
rec_from_row(StoreStmt *st)
{
    StoreRecording *r = g_new0(StoreRecording, 1);
    r->id = store_col_int64(st, 0);
    r->consultation_id = store_col_int64(st, 1);
    /* The schema's CHECK constraints allow only known names. */
    r->role = CONSULTD_ROLE_COMBINED;
    consultd_role_parse(store_col_text(st, 2), TRUE, &r->role);
    r->file = store_col_strdup(st, 3);
    r->state = CONSULTD_REC_FAILED;
    consultd_rec_state_parse(store_col_text(st, 4), &r->state);
    r->reason = store_col_strdup(st, 5);
    r->started_at = store_col_int64(st, 6);
    r->duration_ms = store_col_int64(st, 7);
    r->size = store_col_int64(st, 8);
    r->offset_ms = store_col_int64(st, 9);
    r->created_at = store_col_int64(st, 10);
    r->node_id = store_col_strdup(st, 11);
    r->store = store_col_strdup(st, 12);
    r->upload_id = store_col_strdup(st, 13);
    return r;
}

/* The one row ST finds, or NULL. */
static StoreRecording *
rec_one(StoreStmt *st)
{
    StoreRecording *r = store_step(st) == STORE_ROW ? rec_from_row(st) : NULL;
    store_stmt_reset(st);
    return r;
}

static GPtrArray *
rec_rows(Store *s, StoreStmt *st, GError **error)
{
    return STORE_COLLECT(s, st, rec_from_row, store_recording_free, "recordings", error);
}

/* Escapes nothing: FILE and ROLE are checked to be plain names first. */
static gboolean
plain(const char *v)
{
    for (const char *p = v; p && *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_')
            return FALSE;
    return v && *v;
}

gboolean
store_recording_update(Store *s, gint64 consultation, ConsultdRole role_id, const char *file,
                       ConsultdRecState state_id, const char *reason, gint64 started_at,
                       gint64 duration_ms, gint64 size, GError **error)
{
    const char *role = consultd_role_name(role_id), *state = consultd_rec_state_name(state_id);
    if (!plain(file) || (guint)role_id > CONSULTD_ROLE_COMBINED ||
        state_id == CONSULTD_REC_DELETED || (guint)state_id >= CONSULTD_N_REC_STATES ||
        started_at < 0 || duration_ms < 0 || size < 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_CONFLICT, "bad recording report");
        return FALSE;
    }
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    g_autoptr(StoreConsultation) c = store_consultation_get(s, consultation, error);
    gboolean ok = c != NULL;
    g_autofree char *was = NULL;
    if (ok) {
        StoreStmt *st =
            store_stmt(s, "SELECT state FROM recordings WHERE consultation_id = ?1 AND file = ?2");
        store_bind_int64(st, 1, consultation);
        store_bind_text(st, 2, file);
        if (store_step(st) == STORE_ROW)
            was = store_col_strdup(st, 0);
        store_stmt_reset(st);
    }
    if (ok && terminal(was)) /* never leave a terminal state */
        return store_autocommit(s, began, TRUE, error);
    gint64 now = store_now_ms();
    /* No subtraction that can overflow: started_at comes from a worker
     * (non-negative, checked above), accepted_at is ours. */
    gint64 offset = started_at && c ? store_consultation_offset(c, started_at) : 0;
    if (ok) {
        StoreStmt *st = store_stmt(
            s, "INSERT INTO recordings (consultation_id, role, file, state, reason, started_at,"
               " duration_ms, size, offset_ms, created_at, updated_at, node_id)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)"
               " ON CONFLICT (consultation_id, file) DO UPDATE SET state = ?4, reason = ?5,"
               " started_at = CASE WHEN ?6 <> 0 THEN ?6 ELSE recordings.started_at END,"
               " duration_ms = ?7, size = ?8,"
               " offset_ms = CASE WHEN ?6 <> 0 THEN ?9 ELSE recordings.offset_ms END,"
               " updated_at = ?10");
        store_bind_int64(st, 1, consultation);
        store_bind_text(st, 2, role);
        store_bind_text(st, 3, file);
        store_bind_text(st, 4, state);
        store_bind_text(st, 5, reason ? reason : "");
        store_bind_int64(st, 6, started_at);
        store_bind_int64(st, 7, duration_ms);
        store_bind_int64(st, 8, size);
        store_bind_int64(st, 9, offset);
        store_bind_int64(st, 10, now);
        store_bind_text(st, 11, store_pg_node_id(s));
        ok = store_step_done(s, st, error, "recording");
    }
    if (ok && (state_id == CONSULTD_REC_READY || state_id == CONSULTD_REC_FAILED)) {
        StoreStmt *st = store_stmt(
            s, "SELECT offset_ms FROM recordings WHERE consultation_id = ?1 AND file = ?2");
        store_bind_int64(st, 1, consultation);
        store_bind_text(st, 2, file);
        gint64 off = store_step(st) == STORE_ROW ? store_col_int64(st, 0) : 0;
        store_stmt_reset(st);
        g_autofree char *payload = g_strdup_printf(
            "{\"consultation_id\":%" G_GINT64_FORMAT ",\"teacher_id\":%" G_GINT64_FORMAT
            ",\"student_id\":%" G_GINT64_FORMAT ",\"role\":\"%s\",\"file\":\"%s\","
            "\"duration_ms\":%" G_GINT64_FORMAT ",\"size\":%" G_GINT64_FORMAT
            ",\"offset_ms\":%" G_GINT64_FORMAT "}",
            consultation, c->teacher_id, c->student_id, role, file, duration_ms, size, off);
        ok = store_event_append(
            s, state_id == CONSULTD_REC_READY ? "recording.ready" : "recording.failed",
            c->teacher_id, c->student_id, consultation, payload, error);
    }
    return store_autocommit(s, began, ok, error);
}

GPtrArray *
store_recordings_list(Store *s, gint64 consultation, GError **error)
{
    StoreStmt *st = store_stmt(s, "SELECT " REC_COLS " FROM recordings"
                                  " WHERE consultation_id = ?1 ORDER BY role DESC, id");
    store_bind_int64(st, 1, consultation);
    return rec_rows(s, st, error);
}

StoreRecording *
store_recording_get_ready(Store *s, gint64 consultation, const char *file)
{
    StoreStmt *st = store_stmt(s, "SELECT " REC_COLS " FROM recordings"
                                  " WHERE consultation_id = ?1 AND file = ?2"
                                  " AND state = 'ready'");
    store_bind_int64(st, 1, consultation);
    store_bind_text(st, 2, file);
    StoreRecording *r = rec_one(st);
    return r;
}

GPtrArray *
store_recordings_unfinished(Store *s)
{
    return rec_rows(s,
                    store_stmt(s, "SELECT " REC_COLS " FROM recordings"
                                  " WHERE state IN ('recording','processing') ORDER BY id"),
                    NULL);
}

gboolean
store_recording_stored(Store *s, gint64 consultation, const char *file, const char *where,
                       GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    StoreStmt *st = store_stmt(s, "SELECT " REC_COLS " FROM recordings WHERE consultation_id = ?1"
                                  " AND file = ?2 AND state = 'uploading'");
    store_bind_int64(st, 1, consultation);
    store_bind_text(st, 2, file);
    g_autoptr(StoreRecording) r = rec_one(st);
    gboolean ok = r != NULL;
    if (!ok)
        g_set_error(error, STORE_ERROR, STORE_ERROR_CONFLICT, "%s is not uploading", file);
    if (ok) {
        st = store_stmt(s, "UPDATE recordings SET store = ?3, upload_id = '' WHERE id = ?1"
                           " AND file = ?2");
        store_bind_int64(st, 1, r->id);
        store_bind_text(st, 2, file);
        store_bind_text(st, 3, where);
        ok = store_step_done(s, st, error, "recording stored");
    }
    if (ok && r)
        ok = store_recording_update(s, consultation, r->role, file, CONSULTD_REC_READY, NULL, 0,
                                    r->duration_ms, r->size, error);
    return store_autocommit(s, began, ok, error);
}

gboolean
store_recording_upload_note(Store *s, gint64 consultation, const char *file, const char *upload_id,
                            const char *reason, GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    StoreStmt *st = store_stmt(s, "UPDATE recordings SET upload_id = ?3, reason = ?4,"
                                  " updated_at = ?5 WHERE consultation_id = ?1 AND file = ?2"
                                  " AND state = 'uploading'");
    store_bind_int64(st, 1, consultation);
    store_bind_text(st, 2, file);
    store_bind_text(st, 3, upload_id);
    store_bind_text(st, 4, reason);
    store_bind_int64(st, 5, store_now_ms());
    gboolean ok = store_step_done(s, st, error, "upload");
    return store_autocommit(s, began, ok, error);
}

GPtrArray *
store_recordings_uploading(Store *s)
{
    return rec_rows(s,
                    store_stmt(s, "SELECT " REC_COLS " FROM recordings"
                                  " WHERE state = 'uploading' ORDER BY id"),
                    NULL);
}

guint
store_recordings_next_series(Store *s, gint64 consultation, ConsultdRole role,
                             ConsultdStream stream)
{
    /* A screen's files are <role>-screen*.webm (common/vocab.h). */
    StoreStmt *st = store_stmt(s, "SELECT count(*) FROM recordings WHERE consultation_id = ?1"
                                  " AND role = ?2 AND (file LIKE '%-screen%') = (?3 <> 0)");
    store_bind_int64(st, 1, consultation);
    store_bind_text(st, 2, consultd_role_name(role));
    store_bind_int64(st, 3, stream == CONSULTD_STREAM_SCREEN);
    return (guint)CLAMP(store_scalar(s, st, 0), 0, G_MAXINT) + 1;
}

/* Of recordings R: the unfinished ones on a node that is not serving. */
#define ON_LOST_NODE                                                                               \
    " r.state IN ('recording','processing') AND r.node_id <> '' AND NOT EXISTS"                    \
    " (SELECT 1 FROM consultd_nodes n WHERE n.node_id = r.node_id"                                 \
    "  AND n.lease_until > consultd_now_ms())"

gint64
store_recordings_mark_lost(Store *s, GError **error)
{
    if (s->kind != STORE_KIND_PG)
        return 0;
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return -1;
    StoreStmt *st = store_stmt(s, "UPDATE recordings AS r SET state = 'processing',"
                                  " reason = 'node_lost', updated_at = ?1"
                                  " WHERE r.reason <> 'node_lost' AND" ON_LOST_NODE);
    store_bind_int64(st, 1, store_now_ms());
    gboolean ok = store_step_done(s, st, error, "recordings of lost nodes");
    gint64 n = ok ? store_changes(s) : -1;
    return store_autocommit(s, began, ok, error) ? n : -1;
}

gboolean
store_recording_write_off(Store *s, gint64 id, GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    StoreStmt *st = store_stmt(s, "SELECT " REC_COLS " FROM recordings WHERE id = ?1");
    store_bind_int64(st, 1, id);
    g_autoptr(StoreRecording) r = rec_one(st);
    gboolean lost = FALSE;
    if (r && s->kind == STORE_KIND_PG) {
        st = store_stmt(s, "SELECT count(*) FROM recordings AS r WHERE r.id = ?1 AND" ON_LOST_NODE);
        store_bind_int64(st, 1, id);
        lost = store_scalar(s, st, 0) > 0;
    }
    gboolean ok = FALSE;
    if (!r)
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no recording %" G_GINT64_FORMAT,
                    id);
    else if (consultd_rec_state_settled(r->state))
        g_set_error(error, STORE_ERROR, STORE_ERROR_CONFLICT, "the recording is %s already",
                    consultd_rec_state_name(r->state));
    else if (!lost)
        g_set_error(error, STORE_ERROR, STORE_ERROR_CONFLICT,
                    "its node serves: it finishes the recording itself");
    else
        ok = store_recording_update(s, r->consultation_id, r->role, r->file, CONSULTD_REC_FAILED,
                                    "node_lost", 0, r->duration_ms, r->size, error);
    return store_autocommit(s, began, ok, error);
}

void
store_recordings_progress(Store *s, gint64 consultation, gint64 *open, gint64 *ready)
{
    StoreStmt *st =
        store_stmt(s, "SELECT count(*) FILTER (WHERE state IN ('recording','processing')),"
                      " count(*) FILTER (WHERE state IN ('ready', 'uploading'))"
                      " FROM recordings WHERE consultation_id = ?1 AND role != 'combined'");
    store_bind_int64(st, 1, consultation);
    *open = *ready = 0;
    if (store_step(st) == STORE_ROW) {
        *open = store_col_int64(st, 0);
        *ready = store_col_int64(st, 1);
    }
    store_stmt_reset(st);
}

void
store_my_recording_free(StoreMyRecording *r)
{
    if (!r)
        return;
    g_free(r->file);
    g_free(r);
}

static StoreMyRecording *
my_recording_from_row(StoreStmt *st)
{
    StoreMyRecording *r = g_new0(StoreMyRecording, 1);
    r->consultation_id = store_col_int64(st, 0);
    r->file = store_col_strdup(st, 1);
    r->role = CONSULTD_ROLE_COMBINED;
    consultd_role_parse(store_col_text(st, 2), TRUE, &r->role);
    r->duration_ms = store_col_int64(st, 3);
    r->size = store_col_int64(st, 4);
    r->offset_ms = store_col_int64(st, 5);
    return r;
}

GPtrArray *
store_mypage_recordings(Store *s, gint64 student, GError **error)
{
    StoreStmt *st = store_stmt(
        s, "SELECT r.consultation_id, r.file, r.role, r.duration_ms, r.size, r.offset_ms"
           " FROM mypage_recordings r JOIN mypage m ON m.consultation_id = r.consultation_id"
           " WHERE m.student_id = ?1 ORDER BY r.consultation_id, r.role DESC, r.file");
    store_bind_int64(st, 1, student);
    return STORE_COLLECT(s, st, my_recording_from_row, store_my_recording_free,
                         "my page recordings", error);
}

GPtrArray *
store_recordings_all(Store *s, guint limit, GError **error)
{
    StoreStmt *st = store_stmt(s, "SELECT " REC_COLS " FROM recordings ORDER BY id DESC"
                                  " LIMIT ?1");
    store_bind_int64(st, 1, limit);
    return rec_rows(s, st, error);
}

GPtrArray *
store_recordings_ready_oldest(Store *s, GError **error)
{
    return rec_rows(s,
                    store_stmt(s, "SELECT " REC_COLS " FROM recordings"
                                  " WHERE state = 'ready' ORDER BY created_at, id"),
                    error);
}

gint64
store_recordings_bytes(Store *s)
{
    StoreStmt *st = store_stmt(s, "SELECT coalesce(sum(size), 0) FROM recordings"
                                  " WHERE state = 'ready'");
    return store_scalar(s, st, 0);
}

gboolean
store_recording_deleted(Store *s, gint64 id, const char *reason, GError **error)
{
    g_return_val_if_fail(plain(reason), FALSE);
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    StoreStmt *st = store_stmt(s, "SELECT " REC_COLS " FROM recordings WHERE id = ?1"
                                  " AND state = 'ready'");
    store_bind_int64(st, 1, id);
    g_autoptr(StoreRecording) r = rec_one(st);
    g_autoptr(StoreConsultation) c = r ? store_consultation_get(s, r->consultation_id, NULL) : NULL;
    gboolean ok = c != NULL;
    if (!ok)
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND,
                    "no ready recording %" G_GINT64_FORMAT, id);
    if (ok) {
        st = store_stmt(s, "UPDATE recordings SET state = 'deleted', reason = ?2,"
                           " updated_at = ?3 WHERE id = ?1");
        store_bind_int64(st, 1, id);
        store_bind_text(st, 2, reason);
        store_bind_int64(st, 3, store_now_ms());
        ok = store_step_done(s, st, error, "recording deleted");
    }
    if (ok) {
        g_autofree char *payload = g_strdup_printf(
            "{\"consultation_id\":%" G_GINT64_FORMAT ",\"teacher_id\":%" G_GINT64_FORMAT
            ",\"student_id\":%" G_GINT64_FORMAT ",\"role\":\"%s\",\"file\":\"%s\","
            "\"size\":%" G_GINT64_FORMAT ",\"reason\":\"%s\"}",
            c->id, c->teacher_id, c->student_id, consultd_role_name(r->role), r->file, r->size,
            reason);
        ok = store_event_append(s, "recording.deleted", c->teacher_id, c->student_id, c->id,
                                payload, error);
    }
    /* The chat is part of the record: it goes with the last recording. */
    if (ok) {
        st = store_stmt(s, "SELECT count(*) FROM recordings WHERE consultation_id = ?1"
                           " AND state IN ('recording','processing','uploading','ready')");
        store_bind_int64(st, 1, c->id);
        if (store_scalar(s, st, 1) == 0) {
            st = store_stmt(s, "DELETE FROM messages WHERE consultation_id = ?1");
            store_bind_int64(st, 1, c->id);
            ok = store_step_done(s, st, error, "messages deleted");
            gint64 n = ok ? store_changes(s) : 0;
            if (n > 0) {
                g_autofree char *p2 = g_strdup_printf(
                    "{\"consultation_id\":%" G_GINT64_FORMAT ",\"teacher_id\":%" G_GINT64_FORMAT
                    ",\"student_id\":%" G_GINT64_FORMAT ",\"count\":%" G_GINT64_FORMAT
                    ",\"reason\":\"%s\"}",
                    c->id, c->teacher_id, c->student_id, n, reason);
                ok = store_event_append(s, "messages.deleted", c->teacher_id, c->student_id, c->id,
                                        p2, error);
            }
        }
    }
    return store_autocommit(s, began, ok, error);
}
