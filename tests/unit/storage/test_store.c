/* Unit tests for storage/: migrations, users, sessions, transactions. */
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <string.h>

#include "store.h"

typedef struct {
    char *dir;
    char *path;
} Fixture;

static void
fx_setup(Fixture *f, gconstpointer data)
{
    f->dir = g_dir_make_tmp("store-test-XXXXXX", NULL);
    f->path = g_build_filename(f->dir, "consultd.db", NULL);
}

static void
fx_teardown(Fixture *f, gconstpointer data)
{
    g_autofree char *wal = g_strconcat(f->path, "-wal", NULL);
    g_autofree char *shm = g_strconcat(f->path, "-shm", NULL);
    g_unlink(f->path);
    g_unlink(wal);
    g_unlink(shm);
    g_rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
}

static void
test_fresh_database_is_current(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(Store) s = store_open(f->dir, &err);
    g_assert_no_error(err);
    g_assert_cmpint(store_schema_version(s), ==, STORE_SCHEMA_VERSION);
    g_assert_true(store_integrity_ok(s));
    g_assert_true(store_ping(s, NULL));
}

static void
test_older_database_is_migrated(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    Store *s = store_open_path(f->path, 1, &err);
    g_assert_no_error(err);
    g_assert_cmpint(store_schema_version(s), ==, 1);
    gint64 id = store_user_add(s, "old", STORE_ROLE_TEACHER, "Old", "intro", "h", &err);
    g_assert_no_error(err);
    store_close(s);

    s = store_open_path(f->path, 0, &err);
    g_assert_no_error(err);
    g_assert_cmpint(store_schema_version(s), ==, STORE_SCHEMA_VERSION);
    g_autoptr(StoreUser) u = store_user_get(s, id, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(u->username, ==, "old");
    g_assert_cmpstr(u->intro, ==, "intro");
    store_close(s);
}

static void
test_newer_database_is_refused(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    Store *s = store_open_path(f->path, 0, &err);
    g_assert_no_error(err);
    store_close(s);
    /* Pretend a future build wrote this file (tests of storage/ may use
     * SQLite directly; nothing else may). */
    sqlite3 *db;
    g_assert_cmpint(sqlite3_open(f->path, &db), ==, SQLITE_OK);
    g_assert_cmpint(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), ==, SQLITE_OK);
    sqlite3_close(db);
    s = store_open_path(f->path, 0, &err);
    g_assert_null(s);
    g_assert_error(err, STORE_ERROR, STORE_ERROR_FAILED);
    g_assert_nonnull(strstr(err->message, "newer"));
}

static void
test_users(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(Store) s = store_open(f->dir, &err);
    gint64 a = store_user_add(s, "ann", STORE_ROLE_STUDENT, NULL, NULL, "hashA", &err);
    g_assert_no_error(err);
    g_assert_cmpint(a, >, 0);
    g_assert_cmpint(store_user_add(s, "ann", STORE_ROLE_TEACHER, "x", "", "h", &err), ==, 0);
    g_assert_error(err, STORE_ERROR, STORE_ERROR_EXISTS);
    g_clear_error(&err);

    g_autofree char *hash = NULL;
    g_autoptr(StoreUser) u = store_user_get_by_name(s, "ann", &hash, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(hash, ==, "hashA");
    g_assert_cmpstr(u->display_name, ==, "ann"); /* defaults to the username */
    g_assert_cmpint(u->role, ==, STORE_ROLE_STUDENT);
    g_assert_cmpint(store_user_count(s), ==, 1);

    g_assert_true(store_user_delete(s, a, &err));
    g_assert_null(store_user_get(s, a, &err));
    g_assert_error(err, STORE_ERROR, STORE_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_false(store_user_delete(s, a, &err));
    g_assert_error(err, STORE_ERROR, STORE_ERROR_NOT_FOUND);
    g_clear_error(&err);
    g_assert_cmpint(store_user_count(s), ==, 0);
    /* The username stays taken by the deleted row. */
    g_assert_cmpint(store_user_add(s, "ann", STORE_ROLE_STUDENT, NULL, NULL, "h", &err), ==, 0);
    g_clear_error(&err);
}

static void
test_sessions(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(Store) s = store_open(f->dir, &err);
    gint64 id = store_user_add(s, "bob", STORE_ROLE_TEACHER, "Bob", "", "h", &err);
    gint64 now = store_now_ms();
    g_assert_true(store_session_add(s, "live", id, now + 60000, &err));
    g_assert_true(store_session_add(s, "old", id, now - 1, &err));
    g_autoptr(StoreUser) u = store_session_user(s, "live", now, &err);
    g_assert_no_error(err);
    g_assert_cmpint(u->id, ==, id);
    g_assert_null(store_session_user(s, "old", now, &err));
    g_clear_error(&err);
    g_assert_null(store_session_user(s, "missing", now, &err));
    g_clear_error(&err);
    g_assert_cmpint(store_session_purge(s, now), ==, 1);
    g_assert_true(store_session_delete(s, "live", &err));
    g_assert_null(store_session_user(s, "live", now, &err));
    g_clear_error(&err);
}

static void
test_rollback_keeps_nothing(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(Store) s = store_open(f->dir, &err);
    guint64 commits = store_commit_count(s);
    g_assert_true(store_begin(s, &err));
    store_user_add(s, "tmp", STORE_ROLE_STUDENT, NULL, NULL, "h", &err);
    g_assert_no_error(err);
    store_rollback(s);
    g_assert_cmpint(store_user_count(s), ==, 0);
    g_assert_cmpuint(store_commit_count(s), ==, commits);
    g_assert_true(store_begin(s, &err));
    store_user_add(s, "kept", STORE_ROLE_STUDENT, NULL, NULL, "h", &err);
    g_assert_true(store_commit(s, &err));
    g_assert_cmpint(store_user_count(s), ==, 1);
    g_assert_cmpuint(store_commit_count(s), ==, commits + 1);
}

static void
test_unwritable_dir_is_an_error(void)
{
    g_autoptr(GError) err = NULL;
    Store *s = store_open("/proc/consultd-cannot-be-here", &err);
    g_assert_null(s);
    g_assert_error(err, STORE_ERROR, STORE_ERROR_FAILED);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define T(name, fn) g_test_add("/storage/" name, Fixture, NULL, fx_setup, fn, fx_teardown)
    T("fresh-database-is-current", test_fresh_database_is_current);
    T("older-database-is-migrated", test_older_database_is_migrated);
    T("newer-database-is-refused", test_newer_database_is_refused);
    T("users", test_users);
    T("sessions", test_sessions);
    T("rollback-keeps-nothing", test_rollback_keeps_nothing);
#undef T
    g_test_add_func("/storage/unwritable-dir-is-an-error", test_unwritable_dir_is_an_error);
    return g_test_run();
}
