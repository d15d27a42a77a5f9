/* store_events.c - the event log, the read models fed from it, the webhook
 * queue.
 *
 * Design notes
 * - events is append-only; seq (AUTOINCREMENT, never reused) is the order
 *   and the id clients see (SSE "id:", webhook event ids).
 * - Two cursors: "projections" (read models) and "notify" (webhook queue and
 *   live streams).  store_dispatch() moves both in the same transaction as
 *   the work they stand for, so a crash never applies an event twice and
 *   never loses one.  Rebuilding the read models resets only the first.
 * - The read models are teacher_stats (popularity, consultation count) and
 *   mypage (a student's consultations).  They may lag the write model by one
 *   dispatcher step: that is the eventual consistency the API documents.
 */
#include "store_events.h"

#include <string.h>

gboolean
store_event_append(Store *s, const char *type, gint64 teacher, gint64 student, gint64 consultation,
                   const char *payload, GError **error)
{
    g_return_val_if_fail(s->in_tx, FALSE);
    StoreStmt *st =
        store_stmt(s, "INSERT INTO events (type, teacher_id, student_id, consultation_id, payload,"
                      " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    store_bind_text(st, 1, type);
    store_bind_int64(st, 2, teacher);
    store_bind_int64(st, 3, student);
    store_bind_int64(st, 4, consultation);
    store_bind_text(st, 5, payload);
    store_bind_int64(st, 6, store_now_ms());
    if (!store_step_done(s, st, error, "append event"))
        return FALSE;
    s->appended = TRUE;
    return TRUE;
}

void
store_event_free(StoreEvent *e)
{
    if (!e)
        return;
    g_free(e->type);
    g_free(e->payload);
    g_free(e);
}

#define EVENT_COLS "seq, type, teacher_id, student_id, consultation_id, payload, created_at"

static StoreEvent *
event_from_row(StoreStmt *st)
{
    StoreEvent *e = g_new0(StoreEvent, 1);
    e->seq = store_col_int64(st, 0);
    e->type = store_col_strdup(st, 1);
    e->teacher_id = store_col_int64(st, 2);
    e->student_id = store_col_int64(st, 3);
    e->consultation_id = store_col_int64(st, 4);
    e->payload = store_col_strdup(st, 5);
    e->created_at = store_col_int64(st, 6);
    return e;
}

GPtrArray *
store_events_range(Store *s, gint64 after, gint64 upto, guint limit, GError **error)
{
    StoreStmt *st =
        store_stmt(s, "SELECT " EVENT_COLS " FROM events WHERE seq > ?1 AND (?2 = 0 OR seq <= ?2)"
                      " ORDER BY seq LIMIT ?3");
    store_bind_int64(st, 1, after);
    store_bind_int64(st, 2, upto);
    store_bind_int64(st, 3, limit);
    return STORE_COLLECT(s, st, event_from_row, store_event_free, "read events", error);
}

StoreEvent *
store_event_get(Store *s, gint64 seq)
{
    StoreStmt *st = store_stmt(s, "SELECT " EVENT_COLS " FROM events WHERE seq = ?1");
    store_bind_int64(st, 1, seq);
    StoreEvent *e = store_step(st) == STORE_ROW ? event_from_row(st) : NULL;
    store_stmt_reset(st);
    return e;
}

gint64
store_events_last_seq(Store *s)
{
    StoreStmt *st = store_stmt(s, "SELECT coalesce(max(seq), 0) FROM events");
    return store_scalar(s, st, 0);
}

gint64
store_cursor(Store *s, const char *name)
{
    StoreStmt *st = store_stmt(s, "SELECT seq FROM cursors WHERE name = ?1");
    store_bind_text(st, 1, name);
    return store_scalar(s, st, 0);
}

static gboolean
cursor_set(Store *s, const char *name, gint64 seq, GError **error)
{
    StoreStmt *st = store_stmt(s, "UPDATE cursors SET seq = ?2 WHERE name = ?1");
    store_bind_text(st, 1, name);
    store_bind_int64(st, 2, seq);
    return store_step_done(s, st, error, "move cursor");
}

/* ---------------------------------------------------------- projections */

static gboolean
stats_add(Store *s, gint64 teacher, int popularity, int count, GError **error)
{
    StoreStmt *st =
        store_stmt(s, "INSERT INTO teacher_stats (teacher_id, popularity, consultation_count)"
                      " VALUES (?1, CASE WHEN ?2 > 0 THEN ?2 ELSE 0 END, ?3)"
                      " ON CONFLICT (teacher_id) DO UPDATE SET popularity = CASE"
                      " WHEN teacher_stats.popularity + ?2 > 0 THEN teacher_stats.popularity + ?2"
                      " ELSE 0 END,"
                      " consultation_count = teacher_stats.consultation_count + ?3");
    store_bind_int64(st, 1, teacher);
    store_bind_int64(st, 2, popularity);
    store_bind_int64(st, 3, count);
    return store_step_done(s, st, error, "teacher stats");
}

static gboolean
mypage_insert(Store *s, const StoreEvent *e, GError **error)
{
    StoreStmt *st = store_stmt(
        s, "INSERT INTO mypage (consultation_id, student_id, teacher_id,"
           " teacher_name, status, requested_at)"
           " VALUES (?1, ?2, ?3, coalesce((SELECT display_name FROM users WHERE id = ?3), ''),"
           " 'requested', ?4) ON CONFLICT (consultation_id) DO UPDATE SET"
           " student_id = excluded.student_id, teacher_id = excluded.teacher_id,"
           " teacher_name = excluded.teacher_name, status = excluded.status,"
           " requested_at = excluded.requested_at, started_at = 0, ended_at = 0,"
           " end_reason = ''");
    store_bind_int64(st, 1, e->consultation_id);
    store_bind_int64(st, 2, e->student_id);
    store_bind_int64(st, 3, e->teacher_id);
    store_bind_int64(st, 4, e->created_at);
    return store_step_done(s, st, error, "mypage insert");
}

static gboolean
mypage_update(Store *s, const StoreEvent *e, gboolean started, gboolean ended, GError **error)
{
    StoreStmt *st = store_stmt2(
        s,
        "UPDATE mypage SET status = json_extract(?2, '$.status'),"
        " started_at = CASE WHEN ?3 <> 0 AND started_at = 0 THEN ?5 ELSE started_at END,"
        " ended_at = CASE WHEN ?4 <> 0 THEN ?5 ELSE ended_at END,"
        " end_reason = CASE WHEN ?4 <> 0 THEN coalesce(json_extract(?2, '$.reason'), '')"
        "              ELSE end_reason END"
        " WHERE consultation_id = ?1",
        "UPDATE mypage SET status = $2::jsonb ->> 'status',"
        " started_at = CASE WHEN $3 <> 0 AND started_at = 0 THEN $5 ELSE started_at END,"
        " ended_at = CASE WHEN $4 <> 0 THEN $5 ELSE ended_at END,"
        " end_reason = CASE WHEN $4 <> 0 THEN coalesce($2::jsonb ->> 'reason', '')"
        "              ELSE end_reason END"
        " WHERE consultation_id = $1");
    store_bind_int64(st, 1, e->consultation_id);
    store_bind_text(st, 2, e->payload);
    store_bind_int64(st, 3, started);
    store_bind_int64(st, 4, ended);
    store_bind_int64(st, 5, e->created_at);
    return store_step_done(s, st, error, "mypage update");
}

static gboolean
project_recording(Store *s, const StoreEvent *e, GError **error)
{
#define MYREC_UPSERT                                                                               \
    " ON CONFLICT (consultation_id, file) DO UPDATE SET role = excluded.role,"                     \
    " duration_ms = excluded.duration_ms, size = excluded.size, offset_ms = excluded.offset_ms"
    StoreStmt *st = store_stmt2(
        s,
        "INSERT INTO mypage_recordings (consultation_id, file, role, duration_ms,"
        " size, offset_ms) VALUES (?1, json_extract(?2, '$.file'), json_extract(?2, '$.role'),"
        " json_extract(?2, '$.duration_ms'), json_extract(?2, '$.size'),"
        " json_extract(?2, '$.offset_ms'))" MYREC_UPSERT,
        "INSERT INTO mypage_recordings (consultation_id, file, role, duration_ms,"
        " size, offset_ms) VALUES ($1, $2::jsonb ->> 'file', $2::jsonb ->> 'role',"
        " ($2::jsonb ->> 'duration_ms')::bigint, ($2::jsonb ->> 'size')::bigint,"
        " ($2::jsonb ->> 'offset_ms')::bigint)" MYREC_UPSERT);
    store_bind_int64(st, 1, e->consultation_id);
    store_bind_text(st, 2, e->payload);
    return store_step_done(s, st, error, "mypage recording");
}

/* Applies one event to the read models.  Unknown types are skipped, so an
 * older build can replay a newer log. */
char *
store_json_string(const char *text)
{
    GString *out = g_string_sized_new(strlen(text) + 2);
    g_string_append_c(out, '"');
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            g_string_append_printf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            g_string_append_printf(out, "\\u%04x", *p);
        else
            g_string_append_c(out, (char)*p);
    }
    g_string_append_c(out, '"');
    return g_string_free(out, FALSE);
}

/* The my page's count of a consultation's messages: one more, or none. */
static gboolean
mypage_messages(Store *s, const StoreEvent *e, gboolean cleared, GError **error)
{
    StoreStmt *st = store_stmt(s, "UPDATE mypage SET messages = CASE WHEN ?2 <> 0 THEN 0"
                                  " ELSE messages + 1 END WHERE consultation_id = ?1");
    store_bind_int64(st, 1, e->consultation_id);
    store_bind_int64(st, 2, cleared);
    return store_step_done(s, st, error, "mypage messages");
}

static gboolean
project(Store *s, const StoreEvent *e, GError **error)
{
    const char *t = e->type;
    if (!strcmp(t, "message.created") || !strcmp(t, "messages.deleted"))
        return mypage_messages(s, e, !strcmp(t, "messages.deleted"), error);
    if (!strcmp(t, "teacher.favorited"))
        return stats_add(s, e->teacher_id, 1, 0, error);
    if (!strcmp(t, "teacher.unfavorited"))
        return stats_add(s, e->teacher_id, -1, 0, error);
    if (!strcmp(t, "consultation.requested"))
        return mypage_insert(s, e, error);
    if (!strcmp(t, "consultation.accepted") || !strcmp(t, "consultation.resumed"))
        return mypage_update(s, e, TRUE, FALSE, error);
    if (!strcmp(t, "consultation.interrupted"))
        return mypage_update(s, e, FALSE, FALSE, error);
    if (!strcmp(t, "consultation.ended"))
        return mypage_update(s, e, FALSE, TRUE, error) && stats_add(s, e->teacher_id, 0, 1, error);
    if (!strcmp(t, "recording.ready"))
        return project_recording(s, e, error);
    if (!strcmp(t, "recording.deleted")) {
        StoreStmt *st = store_stmt2(s,
                                    "DELETE FROM mypage_recordings WHERE"
                                    " consultation_id = ?1 AND file = json_extract(?2, '$.file')",
                                    "DELETE FROM mypage_recordings WHERE"
                                    " consultation_id = $1 AND file = $2::jsonb ->> 'file'");
        store_bind_int64(st, 1, e->consultation_id);
        store_bind_text(st, 2, e->payload);
        return store_step_done(s, st, error, "mypage recording deleted");
    }
    if (!strcmp(t, "consultation.declined") || !strcmp(t, "consultation.canceled") ||
        !strcmp(t, "consultation.expired"))
        return mypage_update(s, e, FALSE, TRUE, error);
    return TRUE;
}

static gboolean
enqueue_webhooks(Store *s, const StoreEvent *e, const char *const *urls, GError **error)
{
    for (guint i = 0; urls && urls[i]; i++) {
        StoreStmt *st =
            store_stmt(s, "INSERT INTO webhook_deliveries (event_seq, url, next_attempt_at)"
                          " VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING");
        store_bind_int64(st, 1, e->seq);
        store_bind_text(st, 2, urls[i]);
        store_bind_int64(st, 3, store_now_ms());
        if (!store_step_done(s, st, error, "queue webhook"))
            return FALSE;
    }
    return TRUE;
}

/* Which events of EVS cancel out in the notifications: a favorite and its
 * undoing by the same student for the same teacher in one batch (a toggle
 * burst).  Both still move the read models; neither goes to webhooks or
 * streams.  Newly allocated, one flag per event. */
static gboolean *
coalesced(GPtrArray *evs)
{
    gboolean *skip = g_new0(gboolean, evs->len);
    for (guint i = 0; i < evs->len; i++) {
        StoreEvent *a = evs->pdata[i];
        gboolean fav = !strcmp(a->type, "teacher.favorited");
        if (skip[i] || (!fav && strcmp(a->type, "teacher.unfavorited")))
            continue;
        for (guint k = i + 1; k < evs->len; k++) {
            StoreEvent *b = evs->pdata[k];
            if (skip[k] || b->teacher_id != a->teacher_id || b->student_id != a->student_id)
                continue;
            if (!strcmp(b->type, fav ? "teacher.unfavorited" : "teacher.favorited"))
                skip[i] = skip[k] = TRUE;
            if (!strcmp(b->type, "teacher.favorited") || !strcmp(b->type, "teacher.unfavorited"))
                break; /* the pair's next change decides */
        }
    }
    return skip;
}

GPtrArray *
store_dispatch(Store *s, guint limit, const char *const *webhook_urls, GError **error)
{
    if (!store_begin(s, error))
        return NULL;
    gint64 proj = store_cursor(s, "projections");
    gint64 notify = store_cursor(s, "notify");
    gint64 from = MIN(proj, notify);
    g_autoptr(GPtrArray) evs = store_events_range(s, from, 0, limit, error);
    GPtrArray *notified = g_ptr_array_new_with_free_func((GDestroyNotify)store_event_free);
    gboolean ok = evs != NULL;
    gint64 last = 0;
    g_autofree gboolean *skip = evs ? coalesced(evs) : NULL;
    for (guint i = 0; ok && i < evs->len; i++) {
        StoreEvent *e = evs->pdata[i];
        last = e->seq;
        if (e->seq > proj)
            ok = project(s, e, error);
        if (ok && e->seq > notify && !skip[i]) {
            ok = enqueue_webhooks(s, e, webhook_urls, error);
            g_ptr_array_add(notified, g_steal_pointer(&evs->pdata[i]));
        }
    }
    if (ok && last)
        ok = cursor_set(s, "projections", MAX(proj, last), error) &&
             cursor_set(s, "notify", MAX(notify, last), error);
    if (!ok || !store_commit(s, error)) {
        store_rollback(s);
        g_ptr_array_unref(notified);
        return NULL;
    }
    return notified;
}

GPtrArray *
store_events_follow(Store *s, gint64 after, guint limit, gint64 *upto, GError **error)
{
    *upto = after;
    gint64 proj = store_cursor(s, "projections");
    if (proj <= after)
        return g_ptr_array_new_with_free_func((GDestroyNotify)store_event_free);
    g_autoptr(GPtrArray) evs = store_events_range(s, after, proj, limit, error);
    if (!evs)
        return NULL;
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)store_event_free);
    g_autofree gboolean *skip = coalesced(evs);
    for (guint i = 0; i < evs->len; i++) {
        *upto = ((StoreEvent *)evs->pdata[i])->seq;
        if (!skip[i])
            g_ptr_array_add(out, g_steal_pointer(&evs->pdata[i]));
    }
    return out;
}

/* What retention may delete: events no read model is rebuilt from
 * (presence, favorites, profiles, participants; consultation.* and
 * recording.* stay, one handful per consultation), older than ?1, applied
 * and notified (seq <= ?2), with no delivery still pending. */
#define PRUNABLE                                                                                   \
    "SELECT seq FROM events WHERE created_at < ?1 AND seq <= ?2"                                   \
    " AND type NOT LIKE 'consultation.%' AND type NOT LIKE 'recording.%'"                          \
    " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d"                                          \
    "                 WHERE d.event_seq = events.seq AND d.state = 'pending')"                     \
    " ORDER BY seq LIMIT ?3"

gint64
store_events_prune(Store *s, gint64 before_ms, guint batch, GError **error)
{
    if (!store_begin(s, error))
        return -1;
    gint64 upto = MIN(store_cursor(s, "projections"), store_cursor(s, "notify"));
    StoreStmt *st =
        store_stmt(s, "SELECT count(*), coalesce(max(seq), 0) FROM (" PRUNABLE ") AS p");
    store_bind_int64(st, 1, before_ms);
    store_bind_int64(st, 2, upto);
    store_bind_int64(st, 3, batch);
    gint64 n = 0, last = 0;
    if (store_step(st) == STORE_ROW) {
        n = store_col_int64(st, 0);
        last = store_col_int64(st, 1);
    }
    store_stmt_reset(st);
    const char *const sql[] = {
        "DELETE FROM webhook_deliveries WHERE event_seq IN (" PRUNABLE ")",
        "DELETE FROM events WHERE seq IN (" PRUNABLE ")",
    };
    gboolean ok = TRUE;
    for (guint i = 0; ok && n && i < G_N_ELEMENTS(sql); i++) {
        st = store_stmt(s, sql[i]);
        store_bind_int64(st, 1, before_ms);
        store_bind_int64(st, 2, upto);
        store_bind_int64(st, 3, batch);
        ok = store_step_done(s, st, error, "prune events");
    }
    /* Finished deliveries of the events that stay go when they are as old. */
    if (ok) {
        st = store_stmt(s, "DELETE FROM webhook_deliveries WHERE id IN (SELECT d.id FROM"
                           " webhook_deliveries d JOIN events e ON e.seq = d.event_seq"
                           " WHERE d.state != 'pending' AND e.created_at < ?1 LIMIT ?2)");
        store_bind_int64(st, 1, before_ms);
        store_bind_int64(st, 2, batch);
        ok = store_step_done(s, st, error, "prune deliveries");
        n += ok ? store_changes(s) : 0;
    }
    if (ok && n) {
        st = store_stmt(s, "UPDATE cursors SET seq = CASE WHEN seq > ?1 THEN seq ELSE ?1 END"
                           " WHERE name = 'pruned'");
        store_bind_int64(st, 1, last);
        ok = store_step_done(s, st, error, "pruned cursor");
    }
    if (!ok) {
        store_rollback(s);
        return -1;
    }
    return store_commit(s, error) ? n : -1;
}

gboolean
store_rebuild_projections(Store *s, GError **error)
{
    if (!store_begin(s, error))
        return FALSE;
    gboolean ok = TRUE;
    const char *clear[] = {"DELETE FROM teacher_stats", "DELETE FROM mypage",
                           "DELETE FROM mypage_recordings"};
    for (guint i = 0; ok && i < G_N_ELEMENTS(clear); i++)
        ok = store_step_done(s, store_stmt(s, clear[i]), error, "clear projection");
    gint64 after = 0;
    while (ok) {
        g_autoptr(GPtrArray) evs = store_events_range(s, after, 0, 1000, error);
        if (!evs) {
            ok = FALSE;
            break;
        }
        if (evs->len == 0)
            break;
        for (guint i = 0; ok && i < evs->len; i++)
            ok = project(s, evs->pdata[i], error);
        after = ((StoreEvent *)evs->pdata[evs->len - 1])->seq;
    }
    /* Popularity from the favorites themselves: retention may have deleted
     * the favorite events that built it (store_events_prune). */
    if (ok)
        ok = store_step_done(
            s,
            store_stmt(s,
                       "INSERT INTO teacher_stats (teacher_id, popularity)"
                       " SELECT teacher_id, count(*) FROM favorites GROUP BY teacher_id"
                       " ON CONFLICT (teacher_id) DO UPDATE SET popularity = excluded.popularity"),
            error, "popularity");
    if (ok)
        ok = store_step_done(s,
                             store_stmt(s, "UPDATE teacher_stats SET popularity = 0 WHERE"
                                           " teacher_id NOT IN (SELECT teacher_id FROM favorites)"),
                             error, "popularity");
    ok = ok && cursor_set(s, "projections", after, error);
    if (!ok) {
        store_rollback(s);
        return FALSE;
    }
    return store_commit(s, error);
}

/* --------------------------------------------------------------- my page */

void
store_mypage_row_free(StoreMyPageRow *r)
{
    if (!r)
        return;
    g_free(r->teacher_name);
    g_free(r->end_reason);
    g_free(r);
}

static StoreMyPageRow *
mypage_from_row(StoreStmt *st)
{
    StoreMyPageRow *r = g_new0(StoreMyPageRow, 1);
    r->consultation_id = store_col_int64(st, 0);
    r->teacher_id = store_col_int64(st, 1);
    r->teacher_name = store_col_strdup(st, 2);
    r->status = (StoreConsultStatus)MAX(0, store_consult_status_parse(store_col_text(st, 3)));
    r->requested_at = store_col_int64(st, 4);
    r->started_at = store_col_int64(st, 5);
    r->ended_at = store_col_int64(st, 6);
    r->end_reason = store_col_strdup(st, 7);
    r->messages = store_col_int64(st, 8);
    return r;
}

GPtrArray *
store_mypage(Store *s, gint64 student, GError **error)
{
    StoreStmt *st =
        store_stmt(s, "SELECT consultation_id, teacher_id, teacher_name, status, requested_at,"
                      " started_at, ended_at, end_reason, messages FROM mypage"
                      " WHERE student_id = ?1"
                      " ORDER BY requested_at DESC, consultation_id DESC");
    store_bind_int64(st, 1, student);
    return STORE_COLLECT(s, st, mypage_from_row, store_mypage_row_free, "my page", error);
}

/* -------------------------------------------------------------- webhooks */

void
store_delivery_free(StoreDelivery *d)
{
    if (!d)
        return;
    g_free(d->url);
    g_free(d->state);
    g_free(d->last_error);
    g_free(d);
}

#define DELIVERY_COLS                                                                              \
    "id, event_seq, url, state, attempts, next_attempt_at, last_error, delivered_at"

static StoreDelivery *
delivery_from_row(StoreStmt *st)
{
    StoreDelivery *d = g_new0(StoreDelivery, 1);
    d->id = store_col_int64(st, 0);
    d->event_seq = store_col_int64(st, 1);
    d->url = store_col_strdup(st, 2);
    d->state = store_col_strdup(st, 3);
    d->attempts = store_col_int64(st, 4);
    d->next_attempt_at = store_col_int64(st, 5);
    d->last_error = store_col_strdup(st, 6);
    d->delivered_at = store_col_int64(st, 7);
    return d;
}

static GPtrArray *
deliveries(Store *s, StoreStmt *st, GError **error)
{
    return STORE_COLLECT(s, st, delivery_from_row, store_delivery_free, "webhook deliveries",
                         error);
}

static gint
delivery_cmp(gconstpointer a, gconstpointer b)
{
    gint64 x = (*(StoreDelivery *const *)a)->id, y = (*(StoreDelivery *const *)b)->id;
    return x < y ? -1 : x > y;
}

GPtrArray *
store_deliveries_claim(Store *s, gint64 now_ms, gint64 lease_ms, guint limit)
{
#define CLAIM_SQL(lock)                                                                            \
    "UPDATE webhook_deliveries SET next_attempt_at = ?2 WHERE id IN (SELECT id"                    \
    " FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ?1"                   \
    " ORDER BY id LIMIT ?3" lock ") RETURNING " DELIVERY_COLS
    StoreStmt *st = store_stmt2(s, CLAIM_SQL(""), CLAIM_SQL(" FOR UPDATE SKIP LOCKED"));
    store_bind_int64(st, 1, now_ms);
    store_bind_int64(st, 2, now_ms + lease_ms);
    store_bind_int64(st, 3, limit);
    GPtrArray *out = deliveries(s, st, NULL);
    if (out)
        g_ptr_array_sort(out, delivery_cmp); /* RETURNING keeps no order */
    return out;
}

GPtrArray *
store_deliveries_list(Store *s, guint limit, GError **error)
{
    StoreStmt *st =
        store_stmt(s, "SELECT " DELIVERY_COLS " FROM webhook_deliveries ORDER BY id DESC LIMIT ?1");
    store_bind_int64(st, 1, limit);
    return deliveries(s, st, error);
}

gboolean
store_delivery_result(Store *s, gint64 id, gboolean delivered, const char *error_text,
                      gint64 next_at_ms, GError **err)
{
    StoreStmt *st =
        store_stmt(s, "UPDATE webhook_deliveries SET attempts = attempts + 1,"
                      " state = CASE WHEN ?2 <> 0 THEN 'delivered' WHEN ?4 = 0 THEN 'failed'"
                      "         ELSE 'pending' END,"
                      " delivered_at = CASE WHEN ?2 <> 0 THEN ?5 ELSE 0 END,"
                      " next_attempt_at = CASE WHEN ?4 = 0 THEN next_attempt_at ELSE ?4 END,"
                      " last_error = ?3 WHERE id = ?1");
    store_bind_int64(st, 1, id);
    store_bind_int64(st, 2, delivered);
    store_bind_text(st, 3, error_text ? error_text : "");
    store_bind_int64(st, 4, delivered ? 1 : next_at_ms);
    store_bind_int64(st, 5, store_now_ms());
    gboolean began;
    if (!store_autobegin(s, &began, err))
        return FALSE;
    gboolean ok = store_step_done(s, st, err, "webhook result");
    return store_autocommit(s, began, ok, err);
}
