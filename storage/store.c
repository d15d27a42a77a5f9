/* store.c - the backend-neutral half of the storage API: opening by
 * database URL, statements, errors and transactions.
 *
 * Design notes
 * - A Store is one connection, owned by the main loop's thread; on
 *   PostgreSQL, lent to one fiber at a time (store_hold()).  Its backend
 *   (store_sqlite.c, store_pg.c) runs the statements; this file holds what
 *   both share.
 * - Statements are cached by the address of their SQL literal and finalized
 *   at store_close().
 * - A write transaction is exclusive among writers on either backend
 *   (SQLite: BEGIN IMMEDIATE; PostgreSQL: one advisory lock taken at BEGIN),
 *   so a command checks its rule and changes the state with no other writer
 *   in between, on one node or several.
 */
#include "store_private.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

GQuark
store_error_quark(void)
{
    return g_quark_from_static_string("store-error-quark");
}

gint64
store_now_ms(void)
{
    return g_get_real_time() / 1000;
}

Store *
store_new(StoreKind kind, const StoreDriver *drv)
{
    Store *s = g_new0(Store, 1);
    s->kind = kind;
    s->drv = drv;
    s->stmts = g_hash_table_new(g_direct_hash, g_direct_equal);
    return s;
}

void
store_fail(Store *s, StoreErrorCode code, const char *msg)
{
    s->err = code;
    g_free(s->err_msg);
    s->err_msg = g_strdup(msg ? msg : "unknown error");
}

void
store_set_error(Store *s, GError **error, const char *what)
{
    g_set_error(error, STORE_ERROR, s->err, "%s: %s", what,
                s->err_msg ? s->err_msg : "unknown error");
}

/* --------------------------------------------------- one fiber at a time */

static void
release(gpointer data)
{
    Store *s = data;
    if (s->in_tx) {
        g_warning("storage: a fiber ended inside a transaction; rolling it back");
        store_rollback(s);
    }
    s->holder = g_queue_pop_head(&s->waiters); /* handed over, in turn */
    fiber_wake(s->holder);
}

gboolean
store_waits_in_fibers(Store *s)
{
    return s->drv->drive != NULL && store_shared(s);
}

static void
hold(Store *s, gboolean first)
{
    if (!s->drv->drive)
        return;
    Fiber *me = fiber_self();
    if (!me) {
        while (s->holder)
            s->drv->drive(s, s->holder);
        return;
    }
    if (s->holder == me)
        return;
    if (s->holder) {
        if (first)
            g_queue_push_head(&s->waiters, me);
        else
            g_queue_push_tail(&s->waiters, me);
        while (s->holder != me)
            fiber_sleep();
    } else {
        s->holder = me;
    }
    fiber_at_exit(release, s);
}

void
store_hold(Store *s)
{
    hold(s, FALSE);
}

void
store_hold_first(Store *s)
{
    hold(s, TRUE);
}

void
store_settle(Store *s)
{
    g_return_if_fail(!fiber_self());
    store_hold(s);
}

/* ------------------------------------------------------------ statements */

StoreStmt *
store_stmt2(Store *s, const char *sqlite_sql, const char *pg_sql)
{
    store_hold(s);
    StoreStmt *st = g_hash_table_lookup(s->stmts, sqlite_sql);
    if (st) {
        s->drv->clear(st);
        return st;
    }
    st = s->drv->prepare(s, s->kind == STORE_KIND_PG && pg_sql ? pg_sql : sqlite_sql);
    g_hash_table_insert(s->stmts, (gpointer)sqlite_sql, st);
    return st;
}

StoreStmt *
store_stmt(Store *s, const char *sql)
{
    return store_stmt2(s, sql, NULL);
}

/* The statement calls go to the backend of the statement's store; the
 * first member of every backend's StoreStmt is its Store. */
#define STMT_DRV(st) ((*(Store **)(st))->drv)

void
store_bind_int64(StoreStmt *st, int idx, gint64 v)
{
    STMT_DRV(st)->bind_int64(st, idx, v);
}

void
store_bind_text(StoreStmt *st, int idx, const char *v)
{
    STMT_DRV(st)->bind_text(st, idx, v);
}

int
store_step(StoreStmt *st)
{
    return STMT_DRV(st)->step(st);
}

gint64
store_col_int64(StoreStmt *st, int col)
{
    return STMT_DRV(st)->col_int64(st, col);
}

const char *
store_col_text(StoreStmt *st, int col)
{
    return STMT_DRV(st)->col_text(st, col);
}

void
store_stmt_reset(StoreStmt *st)
{
    STMT_DRV(st)->reset(st);
}

gint64
store_changes(Store *s)
{
    return s->changes;
}

gboolean
store_step_done(Store *s, StoreStmt *st, GError **error, const char *what)
{
    int rc = store_step(st);
    store_stmt_reset(st);
    if (rc == STORE_DONE)
        return TRUE;
    if (rc == STORE_ROW) /* RETURNING nothing asked for: still done */
        return TRUE;
    store_set_error(s, error, what);
    return FALSE;
}

gint64
store_scalar(Store *s, StoreStmt *st, gint64 dflt)
{
    gint64 v = store_step(st) == STORE_ROW ? store_col_int64(st, 0) : dflt;
    store_stmt_reset(st);
    return v;
}

gint64
store_step_id(Store *s, StoreStmt *st, GError **error, const char *what)
{
    int rc = store_step(st);
    gint64 id = rc == STORE_ROW ? store_col_int64(st, 0) : 0;
    store_stmt_reset(st);
    if (rc != STORE_ROW)
        store_set_error(s, error, what);
    return id;
}

GPtrArray *
store_collect(Store *s, StoreStmt *st, gpointer (*row)(StoreStmt *), GDestroyNotify free_fn,
              const char *what, GError **error)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(free_fn);
    int rc;
    while ((rc = store_step(st)) == STORE_ROW)
        g_ptr_array_add(out, row(st));
    if (rc != STORE_DONE) {
        store_set_error(s, error, what);
        g_clear_pointer(&out, g_ptr_array_unref);
    }
    store_stmt_reset(st);
    return out;
}

char *
store_col_strdup(StoreStmt *st, int col)
{
    const char *t = store_col_text(st, col);
    return g_strdup(t ? t : "");
}

gboolean
store_exec(Store *s, const char *sql, GError **error)
{
    store_hold(s);
    return s->drv->exec(s, sql, error);
}

gboolean
store_begin(Store *s, GError **error)
{
    store_hold(s);
    g_return_val_if_fail(!s->in_tx, FALSE);
    if (!s->drv->begin(s, error))
        return FALSE;
    s->in_tx = TRUE;
    s->appended = FALSE;
    return TRUE;
}

gboolean
store_commit(Store *s, GError **error)
{
    store_hold(s);
    g_return_val_if_fail(s->in_tx, FALSE);
    if (!s->drv->commit(s, error)) {
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
    store_hold(s);
    if (!s->in_tx)
        return;
    /* ROLLBACK can only fail if no transaction is open, which the flag
     * already rules out; the backend may also have rolled back by itself
     * (SQLITE_FULL, a lost PostgreSQL connection): a harmless no-op. */
    s->drv->exec(s, "ROLLBACK", NULL);
    s->in_tx = FALSE;
}

gboolean
store_autobegin(Store *s, gboolean *began, GError **error)
{
    store_hold(s);
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
    return s->kind == STORE_KIND_PG ? store_pg_schema_version(s) : store_sqlite_schema_version(s);
}

const char *
store_kind_name(Store *s)
{
    return s->kind == STORE_KIND_PG ? "postgresql" : "sqlite";
}

gboolean
store_shared(Store *s)
{
    return s->kind == STORE_KIND_PG;
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

Store *
store_open_database(const char *database, const char *data_dir, const StoreOptions *opts,
                    GError **error)
{
    if (!database || !*database || g_str_equal(database, "sqlite:"))
        return store_open(data_dir, error);
    if (g_str_has_prefix(database, "sqlite:"))
        return store_open_path(database + strlen("sqlite:"), 0, error);
    if (g_str_has_prefix(database, "postgresql://") || g_str_has_prefix(database, "postgres://") ||
        strchr(database, '='))
        return store_pg_open(database, opts, error);
    g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED,
                "--database: \"%s\" is neither sqlite:[PATH] nor a PostgreSQL URL or "
                "connection string",
                database);
    return NULL;
}

void
store_close(Store *s)
{
    if (!s)
        return;
    store_rollback(s);
    if (s->stmts) {
        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, s->stmts);
        while (g_hash_table_iter_next(&it, NULL, &v))
            s->drv->finalize(v);
        g_hash_table_destroy(s->stmts);
    }
    s->drv->close(s);
    g_free(s->err_msg);
    g_free(s);
}

gboolean
store_ping(Store *s, GError **error)
{
    StoreStmt *st = store_stmt(s, "SELECT 1");
    int rc = store_step(st);
    store_stmt_reset(st);
    if (rc != STORE_ROW) {
        store_set_error(s, error, "ping");
        return FALSE;
    }
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
    return s->kind == STORE_KIND_PG ? TRUE : store_sqlite_integrity_ok(s);
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
