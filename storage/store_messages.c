/* store_messages.c - the chat of a consultation.
 *
 * A message is part of the consultation's record: said while it is
 * requested, live or interrupted, by one of its two participants; each one
 * appends message.created (the message in its payload, for the events
 * stream and webhooks), which also counts it on the student's my page.
 * Retention deletes a consultation's messages with its last recording
 * (store_recordings.c), appending messages.deleted.
 */
#include "store_events.h"

#include <string.h>

void
store_message_free(StoreMessage *m)
{
    if (!m)
        return;
    g_free(m->body);
    g_free(m);
}

#define MSG_COLS "id, consultation_id, author_id, role, body, created_at"

static StoreMessage *
message_from_row(StoreStmt *st)
{
    StoreMessage *m = g_new0(StoreMessage, 1);
    m->id = store_col_int64(st, 0);
    m->consultation_id = store_col_int64(st, 1);
    m->author_id = store_col_int64(st, 2);
    m->role = CONSULTD_ROLE_TEACHER;
    consultd_role_parse(store_col_text(st, 3), FALSE, &m->role);
    m->body = store_col_strdup(st, 4);
    m->created_at = store_col_int64(st, 5);
    return m;
}

gboolean
store_message_body_ok(const char *body)
{
    if (!body || !g_utf8_validate(body, -1, NULL))
        return FALSE;
    glong n = g_utf8_strlen(body, -1);
    gboolean blank = TRUE;
    for (const char *p = body; *p && blank; p = g_utf8_next_char(p))
        blank = g_unichar_isspace(g_utf8_get_char(p));
    return n >= 1 && n <= STORE_MESSAGE_MAX && !blank;
}

StoreMessage *
store_message_add(Store *s, gint64 consultation, gint64 author, const char *body, GError **error)
{
    if (!store_message_body_ok(body)) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_CONFLICT,
                    "a message is 1 to %d characters, not only spaces", STORE_MESSAGE_MAX);
        return NULL;
    }
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return NULL;
    g_autoptr(StoreConsultation) c = store_consultation_get(s, consultation, error);
    gboolean ok = c != NULL;
    if (ok && author != c->teacher_id && author != c->student_id) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no consultation %" G_GINT64_FORMAT,
                    consultation);
        ok = FALSE;
    }
    if (ok && c->status != STORE_CONSULT_REQUESTED && c->status != STORE_CONSULT_LIVE &&
        c->status != STORE_CONSULT_INTERRUPTED) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_CONFLICT, "the consultation is %s",
                    store_consult_status_name(c->status));
        ok = FALSE;
    }
    StoreMessage *m = NULL;
    if (ok) {
        const char *role = author == c->teacher_id ? "teacher" : "student";
        StoreStmt *st = store_stmt(
            s, "INSERT INTO messages (consultation_id, author_id, role, body, created_at)"
               " VALUES (?1, ?2, ?3, ?4, ?5) RETURNING " MSG_COLS);
        store_bind_int64(st, 1, consultation);
        store_bind_int64(st, 2, author);
        store_bind_text(st, 3, role);
        store_bind_text(st, 4, body);
        store_bind_int64(st, 5, store_now_ms());
        if (store_step(st) == STORE_ROW)
            m = message_from_row(st);
        else
            store_set_error(s, error, "message");
        store_stmt_reset(st);
        ok = m != NULL;
    }
    if (ok) {
        g_autofree char *text = store_json_string(m->body);
        g_autofree char *payload = g_strdup_printf(
            "{\"consultation_id\":%" G_GINT64_FORMAT ",\"teacher_id\":%" G_GINT64_FORMAT
            ",\"student_id\":%" G_GINT64_FORMAT ",\"message\":{\"id\":%" G_GINT64_FORMAT
            ",\"author_id\":%" G_GINT64_FORMAT
            ",\"role\":\"%s\",\"body\":%s,\"created_at\":%" G_GINT64_FORMAT
            ",\"offset_ms\":%" G_GINT64_FORMAT "}}",
            consultation, c->teacher_id, c->student_id, m->id, author, consultd_role_name(m->role),
            text, m->created_at, store_consultation_offset(c, m->created_at));
        ok = store_event_append(s, "message.created", c->teacher_id, c->student_id, consultation,
                                payload, error);
    }
    if (!store_autocommit(s, began, ok, error) || !ok) {
        store_message_free(m);
        return NULL;
    }
    return m;
}

GPtrArray *
store_messages_list(Store *s, gint64 consultation, GError **error)
{
    StoreStmt *st = store_stmt(s, "SELECT " MSG_COLS " FROM messages WHERE consultation_id = ?1"
                                  " ORDER BY id");
    store_bind_int64(st, 1, consultation);
    return STORE_COLLECT(s, st, message_from_row, store_message_free, "messages", error);
}

gint64
store_messages_count(Store *s, gint64 consultation)
{
    StoreStmt *st = store_stmt(s, "SELECT count(*) FROM messages WHERE consultation_id = ?1");
    store_bind_int64(st, 1, consultation);
    return store_scalar(s, st, 0);
}
