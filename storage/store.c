/* store.c - opening the database, migrations, statements and transactions.
 *
 * Design notes
 * - One connection, owned by the main loop's thread.  WAL mode so readers
 *   (the sqlite3 CLI, backups) never block the server; synchronous=NORMAL,
 *   which in WAL mode loses no committed transaction on a process crash
 *   (only on power loss, the last few).
 * - Writes use BEGIN IMMEDIATE: the write lock is taken when the transaction
 *   starts, so SQLITE_BUSY can only happen at store_begin(), before any rule
 *   was checked, never in the middle of a command.
 * - The schema is a list of migrations in this file; PRAGMA user_version is
 *   the number of migrations applied.  Each migration runs in one
 *   transaction together with the user_version bump.
 * - Prepared statements are cached by the address of their SQL literal and
 *   finalized at store_close().
 */
#include "store_private.h"

#include <errno.h>
#include <glib/gstdio.h>

GQuark
store_error_quark(void)
{
    return g_quark_from_static_string("store-error-quark");
}

/* Migration N (1-based) brings user_version from N-1 to N. */
static const char *const migrations[] = {
    /* 1: accounts and sessions */
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  username TEXT NOT NULL UNIQUE,"
    "  role TEXT NOT NULL CHECK (role IN ('admin','teacher','student')),"
    "  display_name TEXT NOT NULL,"
    "  intro TEXT NOT NULL DEFAULT '',"
    "  pwhash TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  deleted_at INTEGER);"
    "CREATE TABLE sessions ("
    "  token_hash TEXT PRIMARY KEY,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL);"
    "CREATE INDEX sessions_user ON sessions(user_id);"
    "CREATE INDEX sessions_expiry ON sessions(expires_at);",

    /* 2: the consultation domain, the event log and the read models */
    "CREATE TABLE teachers ("
    "  user_id INTEGER PRIMARY KEY REFERENCES users(id),"
    "  status TEXT NOT NULL DEFAULT 'offline'"
    "    CHECK (status IN ('offline','online','busy')),"
    "  status_at INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO teachers (user_id) SELECT id FROM users WHERE role = 'teacher';"
    "CREATE TRIGGER users_teacher AFTER INSERT ON users WHEN NEW.role = 'teacher'"
    "  BEGIN INSERT INTO teachers (user_id) VALUES (NEW.id); END;"
    "CREATE TABLE favorites ("
    "  student_id INTEGER NOT NULL REFERENCES users(id),"
    "  teacher_id INTEGER NOT NULL REFERENCES teachers(user_id),"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (student_id, teacher_id)) WITHOUT ROWID;"
    "CREATE INDEX favorites_teacher ON favorites(teacher_id);"
    "CREATE TABLE consultations ("
    "  id INTEGER PRIMARY KEY,"
    "  teacher_id INTEGER NOT NULL REFERENCES teachers(user_id),"
    "  student_id INTEGER NOT NULL REFERENCES users(id),"
    "  status TEXT NOT NULL CHECK (status IN ('requested','live','ended',"
    "    'declined','canceled','expired','interrupted')),"
    "  requested_at INTEGER NOT NULL,"
    "  accepted_at INTEGER NOT NULL DEFAULT 0,"
    "  ended_at INTEGER NOT NULL DEFAULT 0,"
    "  end_reason TEXT NOT NULL DEFAULT '');"
    /* The database itself refuses a second open consultation per teacher:
     * the last line of defence behind the transaction's check. */
    "CREATE UNIQUE INDEX consultations_one_open ON consultations(teacher_id)"
    "  WHERE status IN ('requested','live','interrupted');"
    "CREATE INDEX consultations_status ON consultations(status, requested_at);"
    "CREATE INDEX consultations_student ON consultations(student_id);"
    "CREATE TABLE events ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  type TEXT NOT NULL,"
    "  teacher_id INTEGER NOT NULL DEFAULT 0,"
    "  student_id INTEGER NOT NULL DEFAULT 0,"
    "  consultation_id INTEGER NOT NULL DEFAULT 0,"
    "  payload TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
    "INSERT INTO cursors VALUES ('projections', 0), ('notify', 0);"
    "CREATE TABLE teacher_stats ("
    "  teacher_id INTEGER PRIMARY KEY,"
    "  popularity INTEGER NOT NULL DEFAULT 0,"
    "  consultation_count INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE mypage ("
    "  consultation_id INTEGER PRIMARY KEY,"
    "  student_id INTEGER NOT NULL,"
    "  teacher_id INTEGER NOT NULL,"
    "  teacher_name TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  requested_at INTEGER NOT NULL,"
    "  started_at INTEGER NOT NULL DEFAULT 0,"
    "  ended_at INTEGER NOT NULL DEFAULT 0,"
    "  end_reason TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX mypage_student ON mypage(student_id, requested_at);"
    "CREATE TABLE webhook_deliveries ("
    "  id INTEGER PRIMARY KEY,"
    "  event_seq INTEGER NOT NULL REFERENCES events(seq),"
    "  url TEXT NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'pending'"
    "    CHECK (state IN ('pending','delivered','failed')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_at INTEGER NOT NULL,"
    "  last_error TEXT NOT NULL DEFAULT '',"
    "  delivered_at INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (event_seq, url));"
    "CREATE INDEX webhook_due ON webhook_deliveries(state, next_attempt_at);",

    /* 3: recordings, and the my page's view of them */
    "CREATE TABLE recordings ("
    "  id INTEGER PRIMARY KEY,"
    "  consultation_id INTEGER NOT NULL REFERENCES consultations(id),"
    "  role TEXT NOT NULL CHECK (role IN ('teacher','student')),"
    "  file TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('recording','processing','ready',"
    "    'failed','empty','deleted')),"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  started_at INTEGER NOT NULL DEFAULT 0,"
    "  duration_ms INTEGER NOT NULL DEFAULT 0,"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  offset_ms INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  UNIQUE (consultation_id, file));"
    "CREATE INDEX recordings_state ON recordings(state);"
    "CREATE TABLE mypage_recordings ("
    "  consultation_id INTEGER NOT NULL,"
    "  file TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  duration_ms INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  offset_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (consultation_id, file)) WITHOUT ROWID;",

    /* 4: a consultation's combined file is a recording too (role
     * 'combined'); SQLite changes a CHECK by rebuilding the table. */
    "CREATE TABLE recordings_v4 ("
    "  id INTEGER PRIMARY KEY,"
    "  consultation_id INTEGER NOT NULL REFERENCES consultations(id),"
    "  role TEXT NOT NULL CHECK (role IN ('teacher','student','combined')),"
    "  file TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('recording','processing','ready',"
    "    'failed','empty','deleted')),"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  started_at INTEGER NOT NULL DEFAULT 0,"
    "  duration_ms INTEGER NOT NULL DEFAULT 0,"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  offset_ms INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  UNIQUE (consultation_id, file));"
    "INSERT INTO recordings_v4 SELECT * FROM recordings;"
    "DROP TABLE recordings;"
    "ALTER TABLE recordings_v4 RENAME TO recordings;"
    "CREATE INDEX recordings_state ON recordings(state);",
    /* 5: demo accounts are marked, so that a start without --demo can
     * refuse them. */
    "ALTER TABLE users ADD COLUMN demo INTEGER NOT NULL DEFAULT 0;"
    /* ...and event retention remembers how far it has pruned. */
    "INSERT INTO cursors VALUES ('pruned', 0);",
};
G_STATIC_ASSERT(G_N_ELEMENTS(migrations) == STORE_SCHEMA_VERSION);

gint64
store_now_ms(void)
{
    return g_get_real_time() / 1000;
}

static StoreErrorCode
map_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return STORE_ERROR_BUSY;
    case SQLITE_FULL: return STORE_ERROR_FULL;
    case SQLITE_CONSTRAINT: return STORE_ERROR_EXISTS;
    default: return STORE_ERROR_FAILED;
    }
}

void
store_set_error(Store *s, GError **error, const char *what)
{
    int rc = sqlite3_extended_errcode(s->db);
    g_set_error(error, STORE_ERROR, map_code(rc), "%s: %s", what, sqlite3_errmsg(s->db));
}

sqlite3_stmt *
store_stmt(Store *s, const char *sql)
{
    sqlite3_stmt *st = g_hash_table_lookup(s->stmts, sql);
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
    }
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK)
        g_error("store: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(s->db));
    g_hash_table_insert(s->stmts, (gpointer)sql, st);
    return st;
}

gboolean
store_step_done(Store *s, sqlite3_stmt *st, GError **error, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return TRUE;
    }
    store_set_error(s, error, what);
    sqlite3_reset(st);
    return FALSE;
}

GPtrArray *
store_collect(Store *s, sqlite3_stmt *st, gpointer (*row)(sqlite3_stmt *), GDestroyNotify free_fn,
              const char *what, GError **error)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(free_fn);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        g_ptr_array_add(out, row(st));
    if (rc != SQLITE_DONE) {
        store_set_error(s, error, what);
        g_clear_pointer(&out, g_ptr_array_unref);
    }
    sqlite3_reset(st);
    return out;
}

char *
store_col_strdup(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return g_strdup(t ? (const char *)t : "");
}

static gboolean
exec(Store *s, const char *sql, GError **error)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return TRUE;
    g_set_error(error, STORE_ERROR, map_code(rc), "%s", msg ? msg : "exec failed");
    sqlite3_free(msg);
    return FALSE;
}

gboolean
store_begin(Store *s, GError **error)
{
    g_return_val_if_fail(!s->in_tx, FALSE);
    if (!exec(s, "BEGIN IMMEDIATE", error))
        return FALSE;
    s->in_tx = TRUE;
    return TRUE;
}

gboolean
store_commit(Store *s, GError **error)
{
    g_return_val_if_fail(s->in_tx, FALSE);
    if (!exec(s, "COMMIT", error)) {
        store_rollback(s);
        return FALSE;
    }
    s->in_tx = FALSE;
    s->commits++;
    return TRUE;
}

void
store_rollback(Store *s)
{
    if (!s->in_tx)
        return;
    /* ROLLBACK can only fail if no transaction is open, which the flag
     * already rules out; SQLite may also have rolled back by itself after
     * SQLITE_FULL, which makes this a harmless no-op. */
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->in_tx = FALSE;
}

gboolean
store_autobegin(Store *s, gboolean *began, GError **error)
{
    *began = FALSE;
    if (s->in_tx)
        return TRUE;
    if (!store_begin(s, error))
        return FALSE;
    *began = TRUE;
    return TRUE;
}

gboolean
store_autocommit(Store *s, gboolean began, gboolean ok, GError **error)
{
    if (!began)
        return ok;
    if (!ok) {
        store_rollback(s);
        return FALSE;
    }
    return store_commit(s, error);
}

int
store_schema_version(Store *s)
{
    sqlite3_stmt *st = store_stmt(s, "PRAGMA user_version");
    int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_reset(st);
    return v;
}

static gboolean
migrate(Store *s, int target, GError **error)
{
    int have = store_schema_version(s);
    if (have > STORE_SCHEMA_VERSION) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED,
                    "database schema version %d is newer than this build (%d)", have,
                    STORE_SCHEMA_VERSION);
        return FALSE;
    }
    for (int v = have; v < target; v++) {
        g_autofree char *bump = g_strdup_printf("PRAGMA user_version = %d", v + 1);
        if (!store_begin(s, error))
            return FALSE;
        if (!exec(s, migrations[v], error) || !exec(s, bump, error)) {
            store_rollback(s);
            g_prefix_error(error, "migration %d: ", v + 1);
            return FALSE;
        }
        if (!store_commit(s, error))
            return FALSE;
        g_info("storage: migrated schema to version %d", v + 1);
    }
    return TRUE;
}

static void
finalize_stmt(gpointer st)
{
    sqlite3_finalize(st);
}

void
store_set_busy_timeout(Store *s, int ms)
{
    sqlite3_busy_timeout(s->db, ms);
}

Store *
store_open_path(const char *path, int target_version, GError **error)
{
    g_autoptr(Store) s = g_new0(Store, 1);
    s->stmts = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, finalize_stmt);
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        g_set_error(error, STORE_ERROR, map_code(rc), "cannot open %s: %s", path,
                    s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        return NULL;
    }
    sqlite3_extended_result_codes(s->db, 1);
    /* Password hashes and session digests live here: the owner's alone.
     * SQLite gives the -wal and -shm files the database's mode; ones left
     * from an earlier, laxer start are tightened too. */
    for (guint i = 0; i < 3; i++) {
        g_autofree char *f = g_strconcat(path, (const char *[]){"", "-wal", "-shm"}[i], NULL);
        if (g_chmod(f, 0600) != 0 && errno != ENOENT)
            g_warning("cannot make %s private: %s", f, g_strerror(errno));
    }
    store_set_busy_timeout(s, 5000);
    if (!exec(s,
              "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
              "PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
              error)) {
        g_prefix_error(error, "%s: ", path);
        return NULL;
    }
    if (target_version <= 0 || target_version > STORE_SCHEMA_VERSION)
        target_version = STORE_SCHEMA_VERSION;
    if (!migrate(s, target_version, error))
        return NULL;
    return g_steal_pointer(&s);
}

Store *
store_open(const char *data_dir, GError **error)
{
    if (g_mkdir_with_parents(data_dir, 0750) != 0) {
        int e = errno;
        g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED, "cannot create data dir %s: %s",
                    data_dir, g_strerror(e));
        return NULL;
    }
    g_autofree char *path = g_build_filename(data_dir, "consultd.db", NULL);
    return store_open_path(path, 0, error);
}

void
store_close(Store *s)
{
    if (!s)
        return;
    store_rollback(s);
    g_clear_pointer(&s->stmts, g_hash_table_destroy);
    if (s->db) {
        /* Checkpoint so that a clean shutdown leaves a single file. */
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(s->db);
    }
    g_free(s);
}

gboolean
store_ping(Store *s, GError **error)
{
    sqlite3_stmt *st = store_stmt(s, "SELECT count(*) FROM sqlite_schema");
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        store_set_error(s, error, "ping");
        sqlite3_reset(st);
        return FALSE;
    }
    sqlite3_reset(st);
    return TRUE;
}

guint64
store_commit_count(Store *s)
{
    return s->commits;
}

gboolean
store_integrity_ok(Store *s)
{
    sqlite3_stmt *st = store_stmt(s, "PRAGMA integrity_check");
    gboolean ok = sqlite3_step(st) == SQLITE_ROW &&
                  g_strcmp0((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    sqlite3_reset(st);
    return ok;
}

/* The consultation statuses as SQL and JSON spell them (StoreConsultStatus
 * order). */
static const char *const consult_names[] = {"requested", "live",    "ended",      "declined",
                                            "canceled",  "expired", "interrupted"};

const char *
store_consult_status_name(StoreConsultStatus st)
{
    return (guint)st < G_N_ELEMENTS(consult_names) ? consult_names[st] : "unknown";
}

int
store_consult_status_parse(const char *name)
{
    return consultd_name_index(consult_names, G_N_ELEMENTS(consult_names), name);
}
