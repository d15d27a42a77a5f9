/* store_users.c - users and login sessions.
 *
 * A deleted user keeps its row (deleted_at set) so that consultations and
 * events that name it keep their meaning; it can no longer log in and all its
 * sessions are gone.  Sessions are keyed by the SHA-256 of the token: the
 * database never holds a usable token.
 */
#include "store_private.h"

/* An account's roles (StoreRole bit order).  Not the participant roles of
 * common/vocab.h: an admin takes part in no consultation. */
static const char *const role_names[] = {"admin", "teacher", "student"};

const char *
store_role_name(StoreRole role)
{
    switch (role) {
    case STORE_ROLE_ADMIN: return role_names[0];
    case STORE_ROLE_TEACHER: return role_names[1];
    case STORE_ROLE_STUDENT: return role_names[2];
    }
    return "unknown";
}

StoreRole
store_role_parse(const char *name)
{
    int i = consultd_name_index(role_names, G_N_ELEMENTS(role_names), name);
    return i < 0 ? 0 : (StoreRole)(1 << i);
}

void
store_user_free(StoreUser *u)
{
    if (!u)
        return;
    g_free(u->username);
    g_free(u->display_name);
    g_free(u->intro);
    g_free(u);
}

#define USER_COLS "id, username, role, display_name, intro, created_at, demo" /* then pwhash: 7 */

static StoreUser *
user_from_row(sqlite3_stmt *st)
{
    StoreUser *u = g_new0(StoreUser, 1);
    u->id = sqlite3_column_int64(st, 0);
    u->username = store_col_strdup(st, 1);
    u->role = store_role_parse((const char *)sqlite3_column_text(st, 2));
    u->display_name = store_col_strdup(st, 3);
    u->intro = store_col_strdup(st, 4);
    u->created_at = sqlite3_column_int64(st, 5);
    u->demo = sqlite3_column_int(st, 6) != 0;
    return u;
}

gint64
store_user_add(Store *s, const char *username, StoreRole role, const char *display_name,
               const char *intro, const char *pwhash, GError **error)
{
    sqlite3_stmt *st =
        store_stmt(s, "INSERT INTO users (username, role, display_name, intro, pwhash, created_at)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    sqlite3_bind_text(st, 1, username, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, store_role_name(role), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, display_name ? display_name : username, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, intro ? intro : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, pwhash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, store_now_ms());
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return 0;
    gboolean ok = store_step_done(s, st, error, "add user");
    gint64 id = ok ? sqlite3_last_insert_rowid(s->db) : 0;
    if (!store_autocommit(s, began, ok, error))
        return 0;
    return id;
}

StoreUser *
store_user_get(Store *s, gint64 id, GError **error)
{
    sqlite3_stmt *st =
        store_stmt(s, "SELECT " USER_COLS " FROM users WHERE id = ?1 AND deleted_at IS NULL");
    sqlite3_bind_int64(st, 1, id);
    StoreUser *u = NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        u = user_from_row(st);
    else
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no user %" G_GINT64_FORMAT, id);
    sqlite3_reset(st);
    return u;
}

StoreUser *
store_user_get_by_name(Store *s, const char *username, char **pwhash_out, GError **error)
{
    sqlite3_stmt *st = store_stmt(s, "SELECT " USER_COLS ", pwhash FROM users"
                                     " WHERE username = ?1 AND deleted_at IS NULL");
    sqlite3_bind_text(st, 1, username, -1, SQLITE_TRANSIENT);
    StoreUser *u = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        u = user_from_row(st);
        if (pwhash_out)
            *pwhash_out = store_col_strdup(st, 7);
    } else {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no such user");
    }
    sqlite3_reset(st);
    return u;
}

GPtrArray *
store_user_list(Store *s, GError **error)
{
    sqlite3_stmt *st =
        store_stmt(s, "SELECT " USER_COLS " FROM users WHERE deleted_at IS NULL ORDER BY id");
    return STORE_COLLECT(s, st, user_from_row, store_user_free, "list users", error);
}

gint64
store_user_count(Store *s)
{
    sqlite3_stmt *st = store_stmt(s, "SELECT count(*) FROM users WHERE deleted_at IS NULL");
    gint64 n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return n;
}

gboolean
store_user_delete(Store *s, gint64 id, GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    sqlite3_stmt *st =
        store_stmt(s, "UPDATE users SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, store_now_ms());
    gboolean ok = store_step_done(s, st, error, "delete user");
    if (ok && sqlite3_changes(s->db) == 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no user %" G_GINT64_FORMAT, id);
        ok = FALSE;
    }
    if (ok) {
        st = store_stmt(s, "DELETE FROM sessions WHERE user_id = ?1");
        sqlite3_bind_int64(st, 1, id);
        ok = store_step_done(s, st, error, "delete sessions");
    }
    return store_autocommit(s, began, ok, error);
}

gboolean
store_user_set_password(Store *s, gint64 id, const char *pwhash, const char *keep_token_hash,
                        GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    sqlite3_stmt *st = store_stmt(
        s, "UPDATE users SET pwhash = ?2, demo = 0 WHERE id = ?1 AND deleted_at IS NULL");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, pwhash, -1, SQLITE_TRANSIENT);
    gboolean ok = store_step_done(s, st, error, "set password");
    if (ok && sqlite3_changes(s->db) == 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no user %" G_GINT64_FORMAT, id);
        ok = FALSE;
    }
    if (ok) {
        st = store_stmt(s, "DELETE FROM sessions WHERE user_id = ?1 AND token_hash IS NOT ?2");
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, keep_token_hash, -1, SQLITE_TRANSIENT);
        ok = store_step_done(s, st, error, "revoke sessions");
    }
    return store_autocommit(s, began, ok, error);
}

gboolean
store_session_add(Store *s, const char *token_hash, gint64 user_id, gint64 expires_at_ms,
                  GError **error)
{
    sqlite3_stmt *st =
        store_stmt(s, "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)"
                      " VALUES (?1, ?2, ?3, ?4)");
    sqlite3_bind_text(st, 1, token_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, user_id);
    sqlite3_bind_int64(st, 3, store_now_ms());
    sqlite3_bind_int64(st, 4, expires_at_ms);
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = store_step_done(s, st, error, "add session");
    return store_autocommit(s, began, ok, error);
}

StoreUser *
store_session_user(Store *s, const char *token_hash, gint64 now_ms, GError **error)
{
    sqlite3_stmt *st =
        store_stmt(s, "SELECT u.id, u.username, u.role, u.display_name, u.intro, u.created_at,"
                      " u.demo, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id"
                      " WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND u.deleted_at IS NULL");
    sqlite3_bind_text(st, 1, token_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, now_ms);
    StoreUser *u = NULL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        u = user_from_row(st);
        u->session_expires = sqlite3_column_int64(st, 7);
    } else if (rc == SQLITE_DONE) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no session");
    } else
        store_set_error(s, error, "session");
    sqlite3_reset(st);
    return u;
}

gboolean
store_user_mark_demo(Store *s, gint64 id, GError **error)
{
    sqlite3_stmt *st = store_stmt(s, "UPDATE users SET demo = 1 WHERE id = ?1");
    sqlite3_bind_int64(st, 1, id);
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = store_step_done(s, st, error, "mark demo");
    return store_autocommit(s, began, ok, error);
}

gboolean
store_session_delete(Store *s, const char *token_hash, GError **error)
{
    sqlite3_stmt *st = store_stmt(s, "DELETE FROM sessions WHERE token_hash = ?1");
    sqlite3_bind_text(st, 1, token_hash, -1, SQLITE_TRANSIENT);
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = store_step_done(s, st, error, "delete session");
    return store_autocommit(s, began, ok, error);
}

gint64
store_session_purge(Store *s, gint64 now_ms)
{
    sqlite3_stmt *st = store_stmt(s, "DELETE FROM sessions WHERE expires_at <= ?1");
    sqlite3_bind_int64(st, 1, now_ms);
    gboolean began;
    if (!store_autobegin(s, &began, NULL))
        return 0;
    gboolean ok = store_step_done(s, st, NULL, "purge sessions");
    gint64 n = ok ? sqlite3_changes(s->db) : 0;
    store_autocommit(s, began, ok, NULL);
    return n;
}
