/* store_sqlite.c - the SQLite backend: the embedded default.
 *
 * - One connection, owned by the main loop's thread.  WAL mode so readers
 *   (the sqlite3 CLI, backups) never block the server; synchronous=NORMAL,
 *   which in WAL mode loses no committed transaction on a process crash
 *   (only on power loss, the last few).
 * - Writes use BEGIN IMMEDIATE: the write lock is taken when the transaction
 *   starts, so SQLITE_BUSY can only happen at store_begin(), before any rule
 *   was checked, never in the middle of a command.
 * - The schema is the list of migrations below; PRAGMA user_version is the
 *   number of migrations applied.  Each migration runs in one transaction
 *   together with the user_version bump.
 */
#include "store_private.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

struct StoreStmt {
    Store *s;
    sqlite3_stmt *st;
};

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
    /* 6: which node last saw a teacher's console (several nodes share one
     * presence; see store_teachers_console_seen). */
    "ALTER TABLE teachers ADD COLUMN console_at INTEGER NOT NULL DEFAULT 0;",
    /* 7: the node holding a recording's files, and the node a
     * consultation's media is placed on: NULL and '' on one node, the same
     * columns as the shared schema's so that one query serves both. */
    "ALTER TABLE recordings ADD COLUMN node_id TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE consultations ADD COLUMN node_id TEXT;",
    /* 8: the recording store.  A finalized recording may be uploading
     * before it is ready; STORE says where a ready one lives ('' the
     * disk of its node, else the store's URL), UPLOAD_ID the multipart
     * upload in flight (aborted if its node dies).  A rebuild changes the
     * CHECK. */
    "CREATE TABLE recordings_v8 ("
    "  id INTEGER PRIMARY KEY,"
    "  consultation_id INTEGER NOT NULL REFERENCES consultations(id),"
    "  role TEXT NOT NULL CHECK (role IN ('teacher','student','combined')),"
    "  file TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('recording','processing','uploading','ready',"
    "    'failed','empty','deleted')),"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  started_at INTEGER NOT NULL DEFAULT 0,"
    "  duration_ms INTEGER NOT NULL DEFAULT 0,"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  offset_ms INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  node_id TEXT NOT NULL DEFAULT '',"
    "  store TEXT NOT NULL DEFAULT '',"
    "  upload_id TEXT NOT NULL DEFAULT '',"
    "  UNIQUE (consultation_id, file));"
    "INSERT INTO recordings_v8 SELECT *, '', '' FROM recordings;"
    "DROP TABLE recordings;"
    "ALTER TABLE recordings_v8 RENAME TO recordings;"
    "CREATE INDEX recordings_state ON recordings(state);",
    /* 9: the chat of a consultation (part of its record), and the count
     * the my page shows. */
    "CREATE TABLE messages ("
    "  id INTEGER PRIMARY KEY,"
    "  consultation_id INTEGER NOT NULL REFERENCES consultations(id),"
    "  author_id INTEGER NOT NULL,"
    "  role TEXT NOT NULL CHECK (role IN ('teacher','student')),"
    "  body TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX messages_consultation ON messages(consultation_id, id);"
    "ALTER TABLE mypage ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;",
    /* 10: a teacher's waiting line (store_line.c): its students in order,
     * one line at a time per student; whether it takes more; and whether
     * a consultation was offered from it. */
    "CREATE TABLE line_entries ("
    "  id INTEGER PRIMARY KEY,"
    "  teacher_id INTEGER NOT NULL REFERENCES users(id),"
    "  student_id INTEGER NOT NULL UNIQUE REFERENCES users(id),"
    "  joined_at INTEGER NOT NULL,"
    "  seen_at INTEGER NOT NULL);"
    "CREATE INDEX line_teacher ON line_entries(teacher_id, id);"
    "ALTER TABLE teachers ADD COLUMN line_open INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE consultations ADD COLUMN from_line INTEGER NOT NULL DEFAULT 0;",
    /* 11: a consultation's events in order (who shares a screen now is the
     * last screen event of each participant: store_consultation_screens). */
    "CREATE INDEX events_consultation ON events(consultation_id, seq);",
};
G_STATIC_ASSERT(G_N_ELEMENTS(migrations) == STORE_SCHEMA_VERSION);

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

static void
fail_from_db(Store *s)
{
    store_fail(s, map_code(sqlite3_extended_errcode(s->db)), sqlite3_errmsg(s->db));
}

static StoreStmt *
lite_prepare(Store *s, const char *sql)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK)
        g_error("store: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(s->db));
    StoreStmt *w = g_new0(StoreStmt, 1);
    w->s = s;
    w->st = st;
    return w;
}

static void
lite_finalize(StoreStmt *st)
{
    sqlite3_finalize(st->st);
    g_free(st);
}

static void
lite_bind_int64(StoreStmt *st, int idx, gint64 v)
{
    sqlite3_bind_int64(st->st, idx, v);
}

static void
lite_bind_text(StoreStmt *st, int idx, const char *v)
{
    sqlite3_bind_text(st->st, idx, v, -1, SQLITE_TRANSIENT);
}

static void
lite_clear(StoreStmt *st)
{
    sqlite3_reset(st->st);
    sqlite3_clear_bindings(st->st);
}

static int
lite_step(StoreStmt *st)
{
    int rc = sqlite3_step(st->st);
    if (rc == SQLITE_ROW)
        return STORE_ROW;
    if (rc == SQLITE_DONE) {
        st->s->changes = sqlite3_changes(st->s->db);
        return STORE_DONE;
    }
    fail_from_db(st->s);
    return STORE_STEP_ERROR;
}

static gint64
lite_col_int64(StoreStmt *st, int col)
{
    return sqlite3_column_int64(st->st, col);
}

static const char *
lite_col_text(StoreStmt *st, int col)
{
    return (const char *)sqlite3_column_text(st->st, col);
}

static void
lite_reset(StoreStmt *st)
{
    sqlite3_reset(st->st);
}

static gboolean
lite_exec(Store *s, const char *sql, GError **error)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return TRUE;
    g_set_error(error, STORE_ERROR, map_code(rc), "%s", msg ? msg : "exec failed");
    sqlite3_free(msg);
    return FALSE;
}

static gboolean
lite_begin(Store *s, GError **error)
{
    return lite_exec(s, "BEGIN IMMEDIATE", error);
}

static gboolean
lite_commit(Store *s, GError **error)
{
    return lite_exec(s, "COMMIT", error);
}

static void
lite_close(Store *s)
{
    if (s->db) {
        /* Checkpoint so that a clean shutdown leaves a single file. */
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(s->db);
        s->db = NULL;
    }
}

const StoreDriver store_sqlite_driver = {
    .prepare = lite_prepare,
    .finalize = lite_finalize,
    .bind_int64 = lite_bind_int64,
    .bind_text = lite_bind_text,
    .clear = lite_clear,
    .step = lite_step,
    .col_int64 = lite_col_int64,
    .col_text = lite_col_text,
    .reset = lite_reset,
    .exec = lite_exec,
    .begin = lite_begin,
    .commit = lite_commit,
    .close = lite_close,
};

static int
lite_schema_version(Store *s)
{
    return (int)store_scalar(s, store_stmt(s, "PRAGMA user_version"), -1);
}

static gboolean
migrate(Store *s, int target, GError **error)
{
    int have = lite_schema_version(s);
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
        if (!lite_exec(s, migrations[v], error) || !lite_exec(s, bump, error)) {
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

int
store_sqlite_schema_version(Store *s)
{
    return lite_schema_version(s);
}

gboolean
store_sqlite_integrity_ok(Store *s)
{
    StoreStmt *st = store_stmt(s, "PRAGMA integrity_check");
    gboolean ok = store_step(st) == STORE_ROW && g_strcmp0(store_col_text(st, 0), "ok") == 0;
    store_stmt_reset(st);
    return ok;
}

void
store_set_busy_timeout(Store *s, int ms)
{
    if (s->kind == STORE_KIND_SQLITE)
        sqlite3_busy_timeout(s->db, ms);
}

Store *
store_open_path(const char *path, int target_version, GError **error)
{
    g_autoptr(Store) s = store_new(STORE_KIND_SQLITE, &store_sqlite_driver);
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
    if (!lite_exec(s,
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
