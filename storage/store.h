/* store.h - the typed storage API of consultd.
 *
 * Everything the rest of the program knows about persistence is in this
 * header: no SQL and no <sqlite3.h> outside storage/.  A Store is owned by the
 * main loop's thread; it is not thread-safe and never needs to be.
 *
 * Error idiom: functions that can fail return gboolean (or a pointer) and set
 * a GError in STORE_ERROR.  On failure nothing is changed: every write runs in
 * its own transaction or inside the caller's store_begin()/store_commit().
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define STORE_ERROR (store_error_quark())
GQuark store_error_quark(void);

typedef enum {
    STORE_ERROR_FAILED,    /* an I/O or internal SQLite error */
    STORE_ERROR_NOT_FOUND, /* the row does not exist (or was deleted) */
    STORE_ERROR_EXISTS,    /* a unique key is already taken */
    STORE_ERROR_CONFLICT,  /* a domain rule forbids the change now */
    STORE_ERROR_BUSY,      /* the database stayed locked past busy_timeout */
    STORE_ERROR_FULL,      /* the disk is full */
} StoreErrorCode;

/* The schema version this build migrates to; PRAGMA user_version. */
#define STORE_SCHEMA_VERSION 1

typedef struct Store Store;

/* Opens (creating if needed) DIR/consultd.db in WAL mode and applies every
 * pending migration.  Returns NULL and sets error on failure. */
Store *store_open(const char *data_dir, GError **error);
/* Opens the database at PATH, migrating it to at most TARGET_VERSION: for
 * tests that build an older schema.  TARGET_VERSION 0 means the newest. */
Store *store_open_path(const char *path, int target_version, GError **error);
void store_close(Store *s); /* NULL-safe; finalizes statements, closes. */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Store, store_close)

int store_schema_version(Store *s);
/* A cheap query that proves the database answers; for /readyz. */
gboolean store_ping(Store *s, GError **error);
/* Number of committed write transactions since open; for /metrics. */
guint64 store_commit_count(Store *s);
/* PRAGMA integrity_check == "ok". */
gboolean store_integrity_ok(Store *s);

/* Transactions.  store_begin() is BEGIN IMMEDIATE, so the write lock is taken
 * up front and a busy database fails here, not halfway through.  Nesting is
 * not supported. */
gboolean store_begin(Store *s, GError **error);
gboolean store_commit(Store *s, GError **error);
void store_rollback(Store *s);

/* Wall clock in milliseconds since the epoch; one definition for all rows. */
gint64 store_now_ms(void);

/* ---- users and sessions (store_users.c) ---- */

typedef enum {
    STORE_ROLE_ADMIN = 1 << 0,
    STORE_ROLE_TEACHER = 1 << 1,
    STORE_ROLE_STUDENT = 1 << 2,
} StoreRole;
#define STORE_ROLE_ANY (STORE_ROLE_ADMIN | STORE_ROLE_TEACHER | STORE_ROLE_STUDENT)

const char *store_role_name(StoreRole role);
/* Returns 0 for an unknown name. */
StoreRole store_role_parse(const char *name);

typedef struct {
    gint64 id;
    char *username;
    StoreRole role;
    char *display_name;
    char *intro;
    gint64 created_at;
} StoreUser;

void store_user_free(StoreUser *u); /* NULL-safe */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(StoreUser, store_user_free)

/* Adds a user; PWHASH is an already hashed password string.  Returns the new
 * id, or 0 with STORE_ERROR_EXISTS when the username is taken. */
gint64 store_user_add(Store *s, const char *username, StoreRole role,
                      const char *display_name, const char *intro,
                      const char *pwhash, GError **error);
/* Returns a new StoreUser (caller frees) or NULL with STORE_ERROR_NOT_FOUND.
 * Deleted users are not found.  PWHASH_OUT, if not NULL, receives a copy of
 * the stored password hash. */
StoreUser *store_user_get(Store *s, gint64 id, GError **error);
StoreUser *store_user_get_by_name(Store *s, const char *username,
                                  char **pwhash_out, GError **error);
/* All users that are not deleted, ordered by id: a GPtrArray of StoreUser
 * with store_user_free as its free function. */
GPtrArray *store_user_list(Store *s, GError **error);
/* Marks the user deleted and drops their sessions.  The row stays so that
 * history that names the user keeps its meaning; the username stays taken. */
gboolean store_user_delete(Store *s, gint64 id, GError **error);
/* Number of users that are not deleted. */
gint64 store_user_count(Store *s);

/* Sessions are stored by the SHA-256 of the token only (64 hex chars). */
gboolean store_session_add(Store *s, const char *token_hash, gint64 user_id,
                           gint64 expires_at_ms, GError **error);
/* Returns the session's user if the session exists, has not expired at
 * NOW_MS and the user is not deleted; else NULL with STORE_ERROR_NOT_FOUND. */
StoreUser *store_session_user(Store *s, const char *token_hash, gint64 now_ms,
                              GError **error);
gboolean store_session_delete(Store *s, const char *token_hash, GError **error);
/* Deletes expired sessions; returns how many. */
gint64 store_session_purge(Store *s, gint64 now_ms);

G_END_DECLS
