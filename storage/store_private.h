/* store_private.h - store.c's helpers for the other storage/ files only:
 * the handle, statements, errors and transactions. */
#pragma once

#include <sqlite3.h>

#include "store.h"

struct Store {
    sqlite3 *db;
    GHashTable *stmts; /* const char *sql (static) -> sqlite3_stmt * */
    guint64 commits;
    gboolean in_tx;
};

/* Returns the cached prepared statement for SQL (a string literal: the cache
 * is keyed by its address), reset and with bindings cleared.  Aborts only on
 * a programming error (SQL that does not compile). */
sqlite3_stmt *store_stmt(Store *s, const char *sql);
/* Sets ERROR from the database's last error, mapping the SQLite code. */
void store_set_error(Store *s, GError **error, const char *what);
/* Runs a write statement that is already bound; TRUE on SQLITE_DONE. */
gboolean store_step_done(Store *s, sqlite3_stmt *st, GError **error, const char *what);
/* Wraps a single write in its own transaction unless one is open. */
gboolean store_autobegin(Store *s, gboolean *began, GError **error);
gboolean store_autocommit(Store *s, gboolean began, gboolean ok, GError **error);
char *store_col_strdup(sqlite3_stmt *st, int col);
/* Steps ST to the end, building one element per row with ROW; returns the
 * array (freeing elements with FREE_FN), or NULL and ERROR (mentioning WHAT)
 * if stepping failed.  Resets ST either way. */
GPtrArray *store_collect(Store *s, sqlite3_stmt *st, gpointer (*row)(sqlite3_stmt *),
                         GDestroyNotify free_fn, const char *what, GError **error);
#define STORE_COLLECT(s, st, row, free_fn, what, error)                                            \
    store_collect((s), (st), (gpointer(*)(sqlite3_stmt *))(row), (GDestroyNotify)(free_fn),        \
                  (what), (error))
