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
user_from_row(StoreStmt *st)
{
    StoreUser *u = g_new0(StoreUser, 1);
    u->id = store_col_int64(st, 0);
    u->username = store_col_strdup(st, 1);
    u->role = store_role_parse(store_col_text(st, 2));
    u->display_name = store_col_strdup(st, 3);
    u->intro = store_col_strdup(st, 4);
    u->created_at = store_col_int64(st, 5);
    u->demo = store_col_int64(st, 6) != 0;
    return u;
}

gint64
store_user_add(Store *s, const char *username, StoreRole role, const char *display_name,
               const char *intro, const char *pwhash, GError **error)
{
    StoreStmt *st =
        store_stmt(s, "INSERT INTO users (username, role, display_name, intro, pwhash, created_at)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id");
    store_bind_text(st, 1, username);
    store_bind_text(st, 2, store_role_name(role));
    store_bind_text(st, 3, display_name ? display_name : username);
    store_bind_text(st, 4, intro ? intro : "");
    store_bind_text(st, 5, pwhash);
    store_bind_int64(st, 6, store_now_ms());
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return 0;
    gint64 id = store_step_id(s, st, error, "add user");
    gboolean ok = id > 0;
    if (!store_autocommit(s, began, ok, error))
        return 0;
    return id;
}

StoreUser *
store_user_get(Store *s, gint64 id, GError **error)
{
    StoreStmt *st =
        store_stmt(s, "SELECT " USER_COLS " FROM users WHERE id = ?1 AND deleted_at IS NULL");
    store_bind_int64(st, 1, id);
    StoreUser *u = NULL;
    if (store_step(st) == STORE_ROW)
        u = user_from_row(st);
    else
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no user %" G_GINT64_FORMAT, id);
    store_stmt_reset(st);
    return u;
}

StoreUser *
store_user_get_by_name(Store *s, const char *username, char **pwhash_out, GError **error)
{
    StoreStmt *st = store_stmt(s, "SELECT " USER_COLS ", pwhash FROM users"
                                  " WHERE username = ?1 AND deleted_at IS NULL");
    store_bind_text(st, 1, username);
    StoreUser *u = NULL;
    if (store_step(st) == STORE_ROW) {
        u = user_from_row(st);
        if (pwhash_out)
            *pwhash_out = store_col_strdup(st, 7);
    } else {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no such user");
    }
    store_stmt_reset(st);
    return u;
}

GPtrArray *
store_user_list(Store *s, GError **error)
{
    StoreStmt *st =
        store_stmt(s, "SELECT " USER_COLS " FROM users WHERE deleted_at IS NULL ORDER BY id");
    return STORE_COLLECT(s, st, user_from_row, store_user_free, "list users", error);
}

gint64
store_user_count(Store *s)
{
    StoreStmt *st = store_stmt(s, "SELECT count(*) FROM users WHERE deleted_at IS NULL");
    return store_scalar(s, st, 0);
}

gboolean
store_user_delete(Store *s, gint64 id, GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    StoreStmt *st =
        store_stmt(s, "UPDATE users SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL");
    store_bind_int64(st, 1, id);
    store_bind_int64(st, 2, store_now_ms());
    gboolean ok = store_step_done(s, st, error, "delete user");
    if (ok && store_changes(s) == 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no user %" G_GINT64_FORMAT, id);
        ok = FALSE;
    }
    if (ok) {
        st = store_stmt(s, "DELETE FROM sessions WHERE user_id = ?1");
        store_bind_int64(st, 1, id);
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
    StoreStmt *st = store_stmt(
        s, "UPDATE users SET pwhash = ?2, demo = 0 WHERE id = ?1 AND deleted_at IS NULL");
    store_bind_int64(st, 1, id);
    store_bind_text(st, 2, pwhash);
    gboolean ok = store_step_done(s, st, error, "set password");
    if (ok && store_changes(s) == 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no user %" G_GINT64_FORMAT, id);
        ok = FALSE;
    }
    if (ok) {
        st = store_stmt(s, "DELETE FROM sessions WHERE user_id = ?1"
                           " AND (CAST(?2 AS TEXT) IS NULL OR token_hash <> ?2)");
        store_bind_int64(st, 1, id);
        store_bind_text(st, 2, keep_token_hash);
        ok = store_step_done(s, st, error, "revoke sessions");
    }
    return store_autocommit(s, began, ok, error);
}

gboolean
store_session_add(Store *s, const char *token_hash, gint64 user_id, gint64 expires_at_ms,
                  GError **error)
{
    StoreStmt *st =
        store_stmt(s, "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)"
                      " VALUES (?1, ?2, ?3, ?4)");
    store_bind_text(st, 1, token_hash);
    store_bind_int64(st, 2, user_id);
    store_bind_int64(st, 3, store_now_ms());
    store_bind_int64(st, 4, expires_at_ms);
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = store_step_done(s, st, error, "add session");
    return store_autocommit(s, began, ok, error);
}

StoreUser *
store_session_user(Store *s, const char *token_hash, gint64 now_ms, GError **error)
{
    StoreStmt *st =
        store_stmt(s, "SELECT u.id, u.username, u.role, u.display_name, u.intro, u.created_at,"
                      " u.demo, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id"
                      " WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND u.deleted_at IS NULL");
    store_bind_text(st, 1, token_hash);
    store_bind_int64(st, 2, now_ms);
    StoreUser *u = NULL;
    int rc = store_step(st);
    if (rc == STORE_ROW) {
        u = user_from_row(st);
        u->session_expires = store_col_int64(st, 7);
    } else if (rc == STORE_DONE) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no session");
    } else
        store_set_error(s, error, "session");
    store_stmt_reset(st);
    return u;
}

gboolean
store_user_mark_demo(Store *s, gint64 id, GError **error)
{
    StoreStmt *st = store_stmt(s, "UPDATE users SET demo = 1 WHERE id = ?1");
    store_bind_int64(st, 1, id);
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = store_step_done(s, st, error, "mark demo");
    return store_autocommit(s, began, ok, error);
}

gboolean
store_session_delete(Store *s, const char *token_hash, GError **error)
{
    StoreStmt *st = store_stmt(s, "DELETE FROM sessions WHERE token_hash = ?1");
    store_bind_text(st, 1, token_hash);
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = store_step_done(s, st, error, "delete session");
    return store_autocommit(s, began, ok, error);
}

gint64
store_session_purge(Store *s, gint64 now_ms)
{
    StoreStmt *st = store_stmt(s, "DELETE FROM sessions WHERE expires_at <= ?1");
    store_bind_int64(st, 1, now_ms);
    gboolean began;
    if (!store_autobegin(s, &began, NULL))
        return 0;
    gboolean ok = store_step_done(s, st, NULL, "purge sessions");
    gint64 n = ok ? store_changes(s) : 0;
    store_autocommit(s, began, ok, NULL);
    return n;
}
