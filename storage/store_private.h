/* store_private.h - store.c's helpers for the other storage/ files only:
 * the handle, statements, errors and transactions.
 *
 * The domain files speak SQL through StoreStmt, which either backend runs:
 * SQLite (store_sqlite.c) or PostgreSQL (store_pg.c).  The SQL is written in
 * the dialect both accept (ON CONFLICT, RETURNING, IS DISTINCT FROM,
 * FILTER); PostgreSQL gets ?N turned into $N, and where the dialects differ
 * (JSON) a statement is given twice with store_stmt2(). */
#pragma once

#include "fiber.h"
#include "store.h"

typedef struct StoreStmt StoreStmt;
typedef struct StorePg StorePg;

typedef enum {
    STORE_KIND_SQLITE,
    STORE_KIND_PG,
} StoreKind;

/* What store_step() returns besides an error (any other value). */
enum {
    STORE_ROW = 100,
    STORE_DONE = 101,
    STORE_STEP_ERROR = 1,
};

struct Store {
    StoreKind kind;
    const struct StoreDriver *drv;
    struct sqlite3 *db; /* STORE_KIND_SQLITE */
    StorePg *pg;        /* STORE_KIND_PG */
    GHashTable *stmts;  /* const char *sql (static) -> StoreStmt * */
    guint64 commits;
    gboolean in_tx;
    gint64 changes;     /* rows changed by the last write statement */
    StoreErrorCode err; /* the last failed statement's error ... */
    char *err_msg;      /* ... and its text */
    gboolean appended;  /* the open transaction appended an event */
    /* A backend whose waits sleep the calling fiber (PostgreSQL) lends the
     * connection to one fiber at a time, from its first statement to its
     * end: the statement cache, the open transaction and the last error
     * are that fiber's until then.  Others queue in WAITERS. */
    Fiber *holder;
    GQueue waiters; /* Fiber * */
};

/* Makes the connection the caller's: the calling fiber waits its turn; the
 * loop's own stack, which cannot wait, runs the holder (and whoever it
 * hands over to) to its end first.  Every entry point that touches the
 * connection's state calls it. */
void store_hold(Store *s);
/* The same, ahead of the fibers already waiting (the node's lease: a queue
 * of requests each waiting up to the statement timeout must not let it run
 * out). */
void store_hold_first(Store *s);

/* Returns the cached statement for SQL (a string literal: the cache is
 * keyed by its address), reset and with bindings cleared.  Aborts only on
 * a programming error (SQL that does not compile).  store_stmt2() gives
 * PostgreSQL its own text of the statement. */
StoreStmt *store_stmt(Store *s, const char *sql);
StoreStmt *store_stmt2(Store *s, const char *sqlite_sql, const char *pg_sql);
/* Parameters count from 1, as ?N does.  Text is copied. */
void store_bind_int64(StoreStmt *st, int idx, gint64 v);
void store_bind_text(StoreStmt *st, int idx, const char *v);
/* STORE_ROW, STORE_DONE, or another value on error (s->err, s->err_msg). */
int store_step(StoreStmt *st);
/* Columns of the current row, from 0.  A boolean column reads as 0 or 1;
 * NULL reads as 0 or NULL. */
gint64 store_col_int64(StoreStmt *st, int col);
const char *store_col_text(StoreStmt *st, int col);
/* Ends the statement's run; its bindings stay. */
void store_stmt_reset(StoreStmt *st);
/* Rows changed by the last completed write statement. */
gint64 store_changes(Store *s);

/* Sets ERROR from the last failed statement (s->err), prefixed by WHAT. */
void store_set_error(Store *s, GError **error, const char *what);
/* Runs a write statement that is already bound; TRUE on STORE_DONE. */
gboolean store_step_done(Store *s, StoreStmt *st, GError **error, const char *what);
/* The first column of ST's first row (bound already), or DFLT. */
gint64 store_scalar(Store *s, StoreStmt *st, gint64 dflt);
/* Runs an INSERT ... RETURNING id that is already bound; the id, or 0 and
 * ERROR. */
gint64 store_step_id(Store *s, StoreStmt *st, GError **error, const char *what);
/* Wraps a single write in its own transaction unless one is open. */
gboolean store_autobegin(Store *s, gboolean *began, GError **error);
gboolean store_autocommit(Store *s, gboolean began, gboolean ok, GError **error);
char *store_col_strdup(StoreStmt *st, int col);
/* Steps ST to the end, building one element per row with ROW; returns the
 * array (freeing elements with FREE_FN), or NULL and ERROR (mentioning WHAT)
 * if stepping failed.  Resets ST either way. */
GPtrArray *store_collect(Store *s, StoreStmt *st, gpointer (*row)(StoreStmt *),
                         GDestroyNotify free_fn, const char *what, GError **error);
#define STORE_COLLECT(s, st, row, free_fn, what, error)                                            \
    store_collect((s), (st), (gpointer(*)(StoreStmt *))(row), (GDestroyNotify)(free_fn), (what),   \
                  (error))

/* The backends.  Each implements the statement calls above for its kind
 * and these. */
typedef struct StoreDriver {
    StoreStmt *(*prepare)(Store *s, const char *sql);
    void (*finalize)(StoreStmt *st);
    void (*bind_int64)(StoreStmt *st, int idx, gint64 v);
    void (*bind_text)(StoreStmt *st, int idx, const char *v);
    void (*clear)(StoreStmt *st);
    int (*step)(StoreStmt *st);
    gint64 (*col_int64)(StoreStmt *st, int col);
    const char *(*col_text)(StoreStmt *st, int col);
    void (*reset)(StoreStmt *st);
    /* Runs SQL (several statements, no parameters). */
    gboolean (*exec)(Store *s, const char *sql, GError **error);
    /* BEGIN as the backend makes it exclusive among writers. */
    gboolean (*begin)(Store *s, GError **error);
    gboolean (*commit)(Store *s, GError **error);
    void (*close)(Store *s);
    /* Set by a backend whose waits sleep the calling fiber: runs HOLDER,
     * asleep, a step further from the loop's stack. */
    void (*drive)(Store *s, Fiber *holder);
} StoreDriver;

extern const StoreDriver store_sqlite_driver;
extern const StoreDriver store_pg_driver;

/* Records the error of a failed statement on S. */
void store_fail(Store *s, StoreErrorCode code, const char *msg);
/* Runs SQL (no parameters) through S's backend. */
gboolean store_exec(Store *s, const char *sql, GError **error);

Store *store_new(StoreKind kind, const StoreDriver *drv);
int store_sqlite_schema_version(Store *s);
gboolean store_sqlite_integrity_ok(Store *s);
int store_pg_schema_version(Store *s);
/* This node's id in the registry; "" on SQLite or for a tool. */
const char *store_pg_node_id(Store *s);
Store *store_pg_open(const char *conninfo, const StoreOptions *opts, GError **error);
