/* store_pg.c - the PostgreSQL backend: one truth for several nodes.
 *
 * Design notes
 * - One connection per node, owned by the main loop's thread, like
 *   SQLite's.  In the server, a wait for a reply sleeps the calling fiber
 *   (common/fiber.h): the request, or the timer's task, that asked waits,
 *   and the loop serves everything else meanwhile.  The connection is lent
 *   to one fiber at a time, from its first statement to its end
 *   (store_hold() in store.c), so a fiber's statements and transaction are
 *   never interleaved with another's.  A caller on the loop's own stack
 *   cannot sleep: it runs the fiber holding the connection to its end,
 *   then waits as a tool does, polling the socket.
 * - Every wait on the network is bounded: a statement gets
 *   statement_timeout on the server and the same time plus 250 ms on the
 *   client, after which the connection is dropped.
 *   While the connection is down every statement fails at once with
 *   STORE_ERROR_UNAVAILABLE: the server answers 503 database_unavailable
 *   and never waits on a dead peer.  Reconnecting is asynchronous
 *   (PQconnectStart/PQconnectPoll on the loop), with backoff from 100 ms to
 *   1 s.
 * - Writers are serialized across nodes by one transaction-level advisory
 *   lock taken at BEGIN (WRITE_LOCK): the same rule as SQLite's BEGIN
 *   IMMEDIATE, so a command's check and change see no other writer between
 *   them, on any node.  This is also what makes the event log gap-free:
 *   events.seq comes from an identity sequence that is only advanced under
 *   the lock, and the lock is released after the commit is visible, so
 *   transactions commit in seq order.  A reader that has seen seq N has
 *   seen every committed seq below N; a seq burnt by a rolled-back
 *   transaction never appears (docs/reliability.md).
 * - Fencing: a node registers in consultd_nodes with an epoch and renews a
 *   lease (lease_until, on the database's clock).  Every write transaction
 *   checks, under the write lock, that the node's epoch still holds a live
 *   lease; if not, it fails with STORE_ERROR_FENCED and the node
 *   re-registers with a new epoch.  A node frozen past its lease writes
 *   nothing with its old epoch; idle_in_transaction_session_timeout ends a
 *   transaction it held open while frozen.
 * - LISTEN consultd_events wakes the other nodes: a transaction that
 *   appended events sends NOTIFY before COMMIT (delivered at commit).
 * - Statements are prepared lazily on first run, per connection (a
 *   reconnect prepares again).  ?N becomes $N; parameter types are fixed by
 *   the first binding (int64 or text).
 */
#include "store_private.h"

#include <glib-unix.h>
#include <libpq-fe.h>
#include <poll.h>
#include <string.h>

#define WRITE_LOCK 7270001   /* pg_advisory_xact_lock key: the writers' lock */
#define MIGRATE_LOCK 7270002 /* pg_advisory_lock key: one migrating node */
#define INT8OID 20
#define LEASE_MS 6000
#define BACKOFF_MIN_MS 100
/* A transaction of ours runs its statements back to back on the loop: one
 * that sits idle for a second belongs to a frozen or stuck node, and holds
 * the writers' lock that every other node waits for.  The server ends it. */
#define IDLE_TX_MS 1000
/* How much longer than statement_timeout the client waits for a reply. */
#define REPLY_MARGIN_MS 250
/* A tool (no loop to keep serving: migrate, rebuild-projections) waits
 * this long for a statement. */
#define TOOL_TIMEOUT_MS (10 * 60 * 1000)
#define BACKOFF_MAX_MS 1000

struct StorePg {
    char *conninfo;
    PGconn *conn; /* NULL while down */
    guint gen;    /* connection generation; prepared statements belong to one */
    int timeout_ms;
    int connect_timeout_s;
    char *node_id, *node_url;
    gint64 epoch; /* this node's registration; 0: not a node (a tool) */
    gboolean fenced;
    gboolean listen;
    guint watch;     /* the idle connection's socket, for NOTIFY */
    PGconn *pending; /* a reconnect in progress */
    guint pending_watch, retry_timer;
    int backoff_ms;
    gint64 down_since; /* monotonic us; 0 while up */
    void (*on_event)(gpointer data, gboolean reconnected);
    gpointer data;
    guint serial;
    gint64 max_live;   /* consultations' media this node takes (0: none) */
    gboolean draining; /* as the registry said at the last renewal */
    Fiber *waiter;     /* the fiber asleep until the socket has a reply */
    guint wait_timer;  /* ... or until its deadline */
};

struct StoreStmt {
    Store *s;
    char *sql; /* with $N */
    char name[24];
    guint prepared_gen;
    int nparams;
    char **values; /* nparams; NULL is SQL NULL */
    Oid *types;    /* what the statement was prepared with */
    Oid *want;     /* what the current bindings are */
    PGresult *res;
    int row;
};

static void pg_lost(Store *s, const char *why);

/* ------------------------------------------------------------- errors */

static StoreErrorCode
map_state(const char *sqlstate)
{
    if (!sqlstate)
        return STORE_ERROR_UNAVAILABLE;
    if (g_str_has_prefix(sqlstate, "23"))
        return STORE_ERROR_EXISTS;
    if (!strcmp(sqlstate, "57014") || !strcmp(sqlstate, "55P03") || !strcmp(sqlstate, "40001") ||
        !strcmp(sqlstate, "40P01"))
        return STORE_ERROR_BUSY;
    if (!strcmp(sqlstate, "53100"))
        return STORE_ERROR_FULL;
    if (g_str_has_prefix(sqlstate, "08") || g_str_has_prefix(sqlstate, "57P") ||
        !strcmp(sqlstate, "25P03"))
        return STORE_ERROR_UNAVAILABLE;
    return STORE_ERROR_FAILED;
}

/* Records a failed result on S; drops the connection if it is gone. */
static void
fail_result(Store *s, const PGresult *r)
{
    StorePg *pg = s->pg;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : NULL;
    if (!msg || !*msg)
        msg = pg->conn ? PQerrorMessage(pg->conn) : "no connection";
    g_autofree char *text = g_strchomp(g_strdup(msg));
    StoreErrorCode code = map_state(state);
    store_fail(s, code, text);
    if (pg->conn && (PQstatus(pg->conn) == CONNECTION_BAD || code == STORE_ERROR_UNAVAILABLE))
        pg_lost(s, text);
}

static gboolean
unavailable(Store *s)
{
    if (s->pg->conn)
        return FALSE;
    store_fail(s, STORE_ERROR_UNAVAILABLE, "the database is unreachable; reconnecting");
    return TRUE;
}

/* -------------------------------------------------- the bounded wait */

static void
drain_notifies(Store *s)
{
    StorePg *pg = s->pg;
    gboolean got = FALSE;
    PGnotify *n;
    while (pg->conn && (n = PQnotifies(pg->conn))) {
        PQfreemem(n);
        got = TRUE;
    }
    if (got && pg->on_event)
        pg->on_event(pg->data, FALSE);
}

static gboolean
wake_waiter(gpointer data)
{
    StorePg *pg = data;
    pg->wait_timer = 0;
    fiber_wake(pg->waiter);
    return G_SOURCE_REMOVE;
}

/* Waits up to MS for the socket to have something to read.  In a fiber of
 * the server's (the socket is watched) the fiber sleeps and the loop goes
 * on; elsewhere (a tool, the loop's own stack) it polls.  FALSE if the
 * connection was lost meanwhile. */
static gboolean
sleep_for_reply(Store *s, int ms)
{
    StorePg *pg = s->pg;
    if (fiber_self() && pg->watch) {
        pg->waiter = fiber_self();
        pg->wait_timer = g_timeout_add(ms, wake_waiter, pg);
        fiber_sleep();
        g_clear_handle_id(&pg->wait_timer, g_source_remove);
        pg->waiter = NULL;
    } else {
        struct pollfd p = {.fd = PQsocket(pg->conn), .events = POLLIN};
        poll(&p, 1, ms);
    }
    return pg->conn != NULL;
}

/* The loop's stack needs the connection that HOLDER has lent: waits for
 * what HOLDER waits for, here, and runs it on. */
static void
pg_drive(Store *s, Fiber *holder)
{
    StorePg *pg = s->pg;
    if (pg->waiter == holder && pg->conn) {
        struct pollfd p = {.fd = PQsocket(pg->conn), .events = POLLIN};
        poll(&p, 1, 100);
    }
    fiber_wake(holder);
}

/* Waits for the results of what was just sent, at most timeout_ms plus a
 * second.  Returns the last result (an error one if any; caller clears),
 * or NULL with the connection dropped. */
static PGresult *
wait_result(Store *s)
{
    StorePg *pg = s->pg;
    gint64 deadline = g_get_monotonic_time() + (gint64)(pg->timeout_ms + REPLY_MARGIN_MS) * 1000;
    PGresult *keep = NULL;
    for (;;) {
        while (PQisBusy(pg->conn)) {
            gint64 left = (deadline - g_get_monotonic_time()) / 1000;
            if (left <= 0) {
                PQclear(keep);
                store_fail(s, STORE_ERROR_UNAVAILABLE, "the database did not answer in time");
                pg_lost(s, "no answer in time");
                return NULL;
            }
            if (!sleep_for_reply(s, (int)MIN(left, 1000))) {
                PQclear(keep);
                store_fail(s, STORE_ERROR_UNAVAILABLE, "the connection was lost");
                return NULL;
            }
            if (!PQconsumeInput(pg->conn)) {
                PQclear(keep);
                g_autofree char *why = g_strchomp(g_strdup(PQerrorMessage(pg->conn)));
                store_fail(s, STORE_ERROR_UNAVAILABLE, why);
                pg_lost(s, why);
                return NULL;
            }
        }
        PGresult *r = PQgetResult(pg->conn);
        if (!r)
            break;
        gboolean bad = PQresultStatus(r) == PGRES_FATAL_ERROR;
        if (!keep || bad || PQresultStatus(keep) != PGRES_FATAL_ERROR) {
            PQclear(keep);
            keep = r;
        } else {
            PQclear(r);
        }
    }
    if (!keep || PQstatus(pg->conn) == CONNECTION_BAD) {
        fail_result(s, keep);
        PQclear(keep);
        if (pg->conn)
            pg_lost(s, "connection lost");
        return NULL;
    }
    return keep;
}

static gboolean
result_ok(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Runs SQL without parameters; the last result, or NULL and s->err. */
static PGresult *
run_simple(Store *s, const char *sql)
{
    if (unavailable(s))
        return NULL;
    if (!PQsendQuery(s->pg->conn, sql)) {
        fail_result(s, NULL);
        return NULL;
    }
    PGresult *r = wait_result(s);
    if (r && !result_ok(r)) {
        fail_result(s, r);
        PQclear(r);
        return NULL;
    }
    if (r)
        drain_notifies(s);
    return r;
}

/* ------------------------------------------------------------ statements */

/* ?N -> $N (and a bare ? -> the next number), outside string literals. */
static char *
translate(const char *sql, int *nparams)
{
    GString *out = g_string_sized_new(strlen(sql) + 16);
    int next = 0, max = 0;
    gboolean quoted = FALSE;
    for (const char *p = sql; *p; p++) {
        if (*p == '\'')
            quoted = !quoted;
        if (quoted || *p != '?') {
            g_string_append_c(out, *p);
            continue;
        }
        int n;
        if (g_ascii_isdigit(p[1])) {
            n = (int)g_ascii_strtoll(p + 1, (char **)&p, 10);
            p--;
        } else {
            n = ++next;
        }
        max = MAX(max, n);
        g_string_append_printf(out, "$%d", n);
    }
    /* $N written directly (store_stmt2's PostgreSQL text) counts too. */
    for (const char *p = out->str; (p = strchr(p, '$'));) {
        p++;
        if (g_ascii_isdigit(*p))
            max = MAX(max, (int)g_ascii_strtoll(p, NULL, 10));
    }
    *nparams = max;
    return g_string_free(out, FALSE);
}

static StoreStmt *
pg_prepare(Store *s, const char *sql)
{
    StoreStmt *st = g_new0(StoreStmt, 1);
    st->s = s;
    st->sql = translate(sql, &st->nparams);
    g_snprintf(st->name, sizeof st->name, "c%u", ++s->pg->serial);
    st->values = g_new0(char *, MAX(st->nparams, 1));
    st->types = g_new0(Oid, MAX(st->nparams, 1));
    st->want = g_new0(Oid, MAX(st->nparams, 1));
    st->row = -1;
    return st;
}

static void
pg_reset(StoreStmt *st)
{
    g_clear_pointer(&st->res, PQclear);
    st->row = -1;
}

static void
pg_clear(StoreStmt *st)
{
    pg_reset(st);
    for (int i = 0; i < st->nparams; i++) {
        g_clear_pointer(&st->values[i], g_free);
        st->want[i] = 0;
    }
}

static void
pg_finalize(StoreStmt *st)
{
    pg_clear(st);
    g_free(st->values);
    g_free(st->types);
    g_free(st->want);
    g_free(st->sql);
    g_free(st);
}

static void
pg_bind_int64(StoreStmt *st, int idx, gint64 v)
{
    g_return_if_fail(idx >= 1 && idx <= st->nparams);
    g_free(st->values[idx - 1]);
    st->values[idx - 1] = g_strdup_printf("%" G_GINT64_FORMAT, v);
    st->want[idx - 1] = INT8OID;
}

static void
pg_bind_text(StoreStmt *st, int idx, const char *v)
{
    g_return_if_fail(idx >= 1 && idx <= st->nparams);
    g_free(st->values[idx - 1]);
    st->values[idx - 1] = g_strdup(v);
    st->want[idx - 1] = 0; /* the server infers it from the statement */
}

/* Whether the statement must be prepared (again) for this connection and
 * these bindings: an integer where it was prepared untyped would be cut to
 * the type the server inferred. */
static gboolean
needs_prepare(StoreStmt *st)
{
    if (st->prepared_gen != st->s->pg->gen)
        return TRUE;
    for (int i = 0; i < st->nparams; i++)
        if (st->want[i] && st->want[i] != st->types[i])
            return TRUE;
    return FALSE;
}

static gboolean
prepare_now(StoreStmt *st)
{
    Store *s = st->s;
    StorePg *pg = s->pg;
    for (int i = 0; i < st->nparams; i++)
        if (st->want[i])
            st->types[i] = st->want[i];
    if (st->prepared_gen == pg->gen) /* retyped: a new name on this connection */
        g_snprintf(st->name, sizeof st->name, "c%u", ++pg->serial);
    if (!PQsendPrepare(pg->conn, st->name, st->sql, st->nparams, st->types)) {
        fail_result(s, NULL);
        return FALSE;
    }
    PGresult *r = wait_result(s);
    if (!r)
        return FALSE;
    if (!result_ok(r)) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state && (g_str_has_prefix(state, "42") || !strcmp(state, "0A000")))
            g_error("store: cannot prepare \"%s\": %s", st->sql, PQresultErrorMessage(r));
        fail_result(s, r);
        PQclear(r);
        return FALSE;
    }
    PQclear(r);
    st->prepared_gen = pg->gen;
    return TRUE;
}

static int
pg_step(StoreStmt *st)
{
    Store *s = st->s;
    if (!st->res) {
        if (unavailable(s))
            return STORE_STEP_ERROR;
        if (needs_prepare(st) && !prepare_now(st))
            return STORE_STEP_ERROR;
        if (!PQsendQueryPrepared(s->pg->conn, st->name, st->nparams,
                                 (const char *const *)st->values, NULL, NULL, 0)) {
            fail_result(s, NULL);
            return STORE_STEP_ERROR;
        }
        PGresult *r = wait_result(s);
        if (!r)
            return STORE_STEP_ERROR;
        if (!result_ok(r)) {
            fail_result(s, r);
            PQclear(r);
            return STORE_STEP_ERROR;
        }
        const char *n = PQcmdTuples(r);
        s->changes = n && *n ? g_ascii_strtoll(n, NULL, 10) : 0;
        st->res = r;
        st->row = -1;
        drain_notifies(s);
    }
    if (++st->row < PQntuples(st->res))
        return STORE_ROW;
    st->row = PQntuples(st->res);
    return STORE_DONE;
}

static gint64
pg_col_int64(StoreStmt *st, int col)
{
    if (!st->res || st->row >= PQntuples(st->res) || PQgetisnull(st->res, st->row, col))
        return 0;
    const char *v = PQgetvalue(st->res, st->row, col);
    if (v[0] == 't' && !v[1])
        return 1;
    if (v[0] == 'f' && !v[1])
        return 0;
    return g_ascii_strtoll(v, NULL, 10);
}

static const char *
pg_col_text(StoreStmt *st, int col)
{
    if (!st->res || st->row >= PQntuples(st->res) || PQgetisnull(st->res, st->row, col))
        return NULL;
    return PQgetvalue(st->res, st->row, col);
}

static gboolean
pg_exec(Store *s, const char *sql, GError **error)
{
    PGresult *r = run_simple(s, sql);
    if (!r) {
        store_set_error(s, error, "exec");
        return FALSE;
    }
    PQclear(r);
    return TRUE;
}

/* BEGIN, the writers' lock and this node's fence, in one round trip. */
static gboolean
pg_begin(Store *s, GError **error)
{
    StorePg *pg = s->pg;
    if (unavailable(s)) {
        store_set_error(s, error, "begin");
        return FALSE;
    }
    const char *id = pg->node_id ? pg->node_id : "";
    char *lit = PQescapeLiteral(pg->conn, id, strlen(id));
    if (!lit) {
        fail_result(s, NULL);
        store_set_error(s, error, "begin");
        return FALSE;
    }
    g_autofree char *sql = g_strdup_printf(
        "BEGIN; SELECT pg_advisory_xact_lock(%d), %" G_GINT64_FORMAT " = 0 OR EXISTS (SELECT 1"
        " FROM consultd_nodes WHERE node_id = %s AND epoch = %" G_GINT64_FORMAT
        " AND lease_until > consultd_now_ms())",
        WRITE_LOCK, pg->epoch, lit, pg->epoch);
    PQfreemem(lit);
    PGresult *r = run_simple(s, sql);
    gboolean fenced = r && PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 1), "f");
    gboolean ok = r && PQntuples(r) == 1 && !fenced;
    PQclear(r);
    if (ok)
        return TRUE;
    if (fenced) {
        pg->fenced = TRUE;
        store_fail(s, STORE_ERROR_FENCED,
                   "this node's lease has run out; it registers again before writing");
    }
    store_set_error(s, error, "begin");
    pg_exec(s, "ROLLBACK", NULL);
    return FALSE;
}

static gboolean
pg_commit(Store *s, GError **error)
{
    /* NOTIFY is delivered at commit, to every listening node; both go in
     * one round trip. */
    PGresult *r = run_simple(s, s->appended ? "NOTIFY consultd_events; COMMIT" : "COMMIT");
    if (!r) {
        store_set_error(s, error, "commit");
        return FALSE;
    }
    /* COMMIT of a transaction the server had already failed answers
     * ROLLBACK, without an error. */
    gboolean ok = g_str_equal(PQcmdStatus(r), "COMMIT");
    PQclear(r);
    if (!ok)
        g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED, "commit: the server rolled back");
    return ok;
}

/* ----------------------------------------------------------- connection */

static void
stop_watch(StorePg *pg)
{
    g_clear_handle_id(&pg->watch, g_source_remove);
}

static gboolean
on_readable(gint fd, GIOCondition cond, gpointer data)
{
    Store *s = data;
    StorePg *pg = s->pg;
    if (!pg->conn || !PQconsumeInput(pg->conn)) {
        pg->watch = 0;
        g_autofree char *why =
            g_strchomp(g_strdup(pg->conn ? PQerrorMessage(pg->conn) : "connection lost"));
        pg_lost(s, why);
        return G_SOURCE_REMOVE;
    }
    drain_notifies(s);
    fiber_wake(pg->waiter);
    return G_SOURCE_CONTINUE;
}

static void start_reconnect(Store *s);

static gboolean
retry_connect(gpointer data)
{
    Store *s = data;
    s->pg->retry_timer = 0;
    start_reconnect(s);
    return G_SOURCE_REMOVE;
}

static void
schedule_reconnect(Store *s)
{
    StorePg *pg = s->pg;
    if (!pg->on_event || pg->retry_timer || pg->pending)
        return; /* a tool: no loop to reconnect on */
    pg->retry_timer = g_timeout_add(pg->backoff_ms, retry_connect, s);
    pg->backoff_ms = MIN(pg->backoff_ms * 2, BACKOFF_MAX_MS);
}

static void
pg_lost(Store *s, const char *why)
{
    StorePg *pg = s->pg;
    if (!pg->conn)
        return;
    g_warning("storage: lost the PostgreSQL connection: %s", why);
    stop_watch(pg);
    PQfinish(pg->conn);
    pg->conn = NULL;
    pg->down_since = g_get_monotonic_time();
    pg->backoff_ms = BACKOFF_MIN_MS;
    schedule_reconnect(s);
    fiber_wake(pg->waiter); /* to find the connection gone */
}

static const char *const conn_keys[] = {
    "dbname",           "connect_timeout",  "application_name",
    "options",          "keepalives_idle",  "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", NULL};

/* Connection parameters: the user's conninfo (expanded as dbname) plus the
 * timeouts. */
static void
conn_values(StorePg *pg, char **vals)
{
    vals[0] = g_strdup(pg->conninfo);
    vals[1] = g_strdup_printf("%d", pg->connect_timeout_s);
    vals[2] = g_strdup("consultd");
    vals[3] = g_strdup_printf(
        "-c statement_timeout=%d -c lock_timeout=%d"
        " -c idle_in_transaction_session_timeout=%d -c TimeZone=UTC -c client_min_messages=warning",
        pg->timeout_ms, pg->timeout_ms, IDLE_TX_MS);
    vals[4] = g_strdup("5");
    vals[5] = g_strdup("2");
    vals[6] = g_strdup("2");
    vals[7] = g_strdup_printf("%d", MAX(pg->timeout_ms * 2, 5000));
    vals[8] = NULL;
}

/* After a connection is made: listen, watch, and tell the owner. */
static gboolean
connected(Store *s, PGconn *c, gboolean initial)
{
    StorePg *pg = s->pg;
    pg->conn = c;
    pg->gen++;
    pg->backoff_ms = BACKOFF_MIN_MS;
    if (pg->listen) {
        PGresult *r = run_simple(s, "LISTEN consultd_events");
        if (!r)
            return FALSE;
        PQclear(r);
    }
    if (pg->on_event && !pg->watch)
        /* Above the requests' priority: a reply resumes the fiber that
         * holds the connection before the loop takes in more work, which
         * would only queue behind it (about a third fewer commands a
         * second at the default priority). */
        pg->watch = g_unix_fd_add_full(G_PRIORITY_HIGH, PQsocket(c), G_IO_IN, on_readable, s, NULL);
    if (!initial) {
        g_message("storage: PostgreSQL connection back after %.1f s",
                  (g_get_monotonic_time() - pg->down_since) / 1e6);
        pg->down_since = 0;
        if (pg->on_event)
            pg->on_event(pg->data, TRUE);
    }
    return TRUE;
}

static gboolean
poll_connect(gint fd, GIOCondition cond, gpointer data)
{
    Store *s = data;
    StorePg *pg = s->pg;
    pg->pending_watch = 0;
    PostgresPollingStatusType st = PQconnectPoll(pg->pending);
    if (st == PGRES_POLLING_OK) {
        PGconn *c = pg->pending;
        pg->pending = NULL;
        if (!connected(s, c, FALSE))
            schedule_reconnect(s);
        return G_SOURCE_REMOVE;
    }
    if (st == PGRES_POLLING_FAILED) {
        g_debug("storage: reconnect failed: %s", PQerrorMessage(pg->pending));
        g_clear_pointer(&pg->pending, PQfinish);
        schedule_reconnect(s);
        return G_SOURCE_REMOVE;
    }
    pg->pending_watch = g_unix_fd_add(
        PQsocket(pg->pending), st == PGRES_POLLING_READING ? G_IO_IN : G_IO_OUT, poll_connect, s);
    return G_SOURCE_REMOVE;
}

static void
start_reconnect(Store *s)
{
    StorePg *pg = s->pg;
    char *vals[G_N_ELEMENTS(conn_keys)];
    conn_values(pg, vals);
    pg->pending = PQconnectStartParams(conn_keys, (const char *const *)vals, 1);
    for (guint i = 0; vals[i]; i++)
        g_free(vals[i]);
    if (!pg->pending || PQstatus(pg->pending) == CONNECTION_BAD) {
        g_clear_pointer(&pg->pending, PQfinish);
        schedule_reconnect(s);
        return;
    }
    pg->pending_watch = g_unix_fd_add(PQsocket(pg->pending), G_IO_OUT, poll_connect, s);
}

static void
pg_close(Store *s)
{
    StorePg *pg = s->pg;
    if (!pg)
        return;
    stop_watch(pg);
    g_clear_handle_id(&pg->pending_watch, g_source_remove);
    g_clear_handle_id(&pg->retry_timer, g_source_remove);
    g_clear_pointer(&pg->pending, PQfinish);
    g_clear_pointer(&pg->conn, PQfinish);
    g_free(pg->conninfo);
    g_free(pg->node_id);
    g_free(pg->node_url);
    g_free(pg);
    s->pg = NULL;
}

const StoreDriver store_pg_driver = {
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .bind_int64 = pg_bind_int64,
    .bind_text = pg_bind_text,
    .clear = pg_clear,
    .step = pg_step,
    .col_int64 = pg_col_int64,
    .col_text = pg_col_text,
    .reset = pg_reset,
    .exec = pg_exec,
    .begin = pg_begin,
    .commit = pg_commit,
    .close = pg_close,
    .drive = pg_drive,
};

/* ------------------------------------------------------------ migrations */

#define T "TEXT COLLATE \"C\""
#define ID "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

/* Migration N (1-based) brings consultd_schema.version from N-1 to N.  The
 * first is SQLite's schema at its version 6, in PostgreSQL's types: BIGINT
 * for ids and milliseconds, text compared bytewise (COLLATE "C", as SQLite
 * compares), and the node registry. */
static const char *const pg_migrations[] = {
    "CREATE FUNCTION consultd_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE AS"
    " $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;"
    "CREATE TABLE users ("
    "  id " ID ","
    "  username " T " NOT NULL UNIQUE,"
    "  role " T " NOT NULL CHECK (role IN ('admin','teacher','student')),"
    "  display_name " T " NOT NULL,"
    "  intro " T " NOT NULL DEFAULT '',"
    "  pwhash " T " NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  deleted_at BIGINT,"
    "  demo INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE sessions ("
    "  token_hash " T " PRIMARY KEY,"
    "  user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  created_at BIGINT NOT NULL,"
    "  expires_at BIGINT NOT NULL);"
    "CREATE INDEX sessions_user ON sessions(user_id);"
    "CREATE INDEX sessions_expiry ON sessions(expires_at);"
    "CREATE TABLE teachers ("
    "  user_id BIGINT PRIMARY KEY REFERENCES users(id),"
    "  status " T " NOT NULL DEFAULT 'offline'"
    "    CHECK (status IN ('offline','online','busy')),"
    "  status_at BIGINT NOT NULL DEFAULT 0,"
    "  console_at BIGINT NOT NULL DEFAULT 0);"
    "CREATE FUNCTION consultd_users_teacher() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN INSERT INTO teachers (user_id) VALUES (NEW.id); RETURN NULL; END $$;"
    "CREATE TRIGGER users_teacher AFTER INSERT ON users FOR EACH ROW"
    "  WHEN (NEW.role = 'teacher') EXECUTE FUNCTION consultd_users_teacher();"
    "CREATE TABLE favorites ("
    "  student_id BIGINT NOT NULL REFERENCES users(id),"
    "  teacher_id BIGINT NOT NULL REFERENCES teachers(user_id),"
    "  created_at BIGINT NOT NULL,"
    "  PRIMARY KEY (student_id, teacher_id));"
    "CREATE INDEX favorites_teacher ON favorites(teacher_id);"
    "CREATE TABLE consultations ("
    "  id " ID ","
    "  teacher_id BIGINT NOT NULL REFERENCES teachers(user_id),"
    "  student_id BIGINT NOT NULL REFERENCES users(id),"
    "  status " T " NOT NULL CHECK (status IN ('requested','live','ended',"
    "    'declined','canceled','expired','interrupted')),"
    "  requested_at BIGINT NOT NULL,"
    "  accepted_at BIGINT NOT NULL DEFAULT 0,"
    "  ended_at BIGINT NOT NULL DEFAULT 0,"
    "  end_reason " T " NOT NULL DEFAULT '');"
    "CREATE UNIQUE INDEX consultations_one_open ON consultations(teacher_id)"
    "  WHERE status IN ('requested','live','interrupted');"
    "CREATE INDEX consultations_status ON consultations(status, requested_at);"
    "CREATE INDEX consultations_student ON consultations(student_id);"
    "CREATE TABLE events ("
    "  seq " ID ","
    "  type " T " NOT NULL,"
    "  teacher_id BIGINT NOT NULL DEFAULT 0,"
    "  student_id BIGINT NOT NULL DEFAULT 0,"
    "  consultation_id BIGINT NOT NULL DEFAULT 0,"
    "  payload TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL);"
    "CREATE TABLE cursors (name " T " PRIMARY KEY, seq BIGINT NOT NULL);"
    "INSERT INTO cursors VALUES ('projections', 0), ('notify', 0), ('pruned', 0);"
    "CREATE TABLE teacher_stats ("
    "  teacher_id BIGINT PRIMARY KEY,"
    "  popularity BIGINT NOT NULL DEFAULT 0,"
    "  consultation_count BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE mypage ("
    "  consultation_id BIGINT PRIMARY KEY,"
    "  student_id BIGINT NOT NULL,"
    "  teacher_id BIGINT NOT NULL,"
    "  teacher_name " T " NOT NULL,"
    "  status " T " NOT NULL,"
    "  requested_at BIGINT NOT NULL,"
    "  started_at BIGINT NOT NULL DEFAULT 0,"
    "  ended_at BIGINT NOT NULL DEFAULT 0,"
    "  end_reason " T " NOT NULL DEFAULT '');"
    "CREATE INDEX mypage_student ON mypage(student_id, requested_at);"
    "CREATE TABLE webhook_deliveries ("
    "  id " ID ","
    "  event_seq BIGINT NOT NULL REFERENCES events(seq),"
    "  url " T " NOT NULL,"
    "  state " T " NOT NULL DEFAULT 'pending'"
    "    CHECK (state IN ('pending','delivered','failed')),"
    "  attempts BIGINT NOT NULL DEFAULT 0,"
    "  next_attempt_at BIGINT NOT NULL,"
    "  last_error " T " NOT NULL DEFAULT '',"
    "  delivered_at BIGINT NOT NULL DEFAULT 0,"
    "  UNIQUE (event_seq, url));"
    "CREATE INDEX webhook_due ON webhook_deliveries(state, next_attempt_at);"
    "CREATE TABLE recordings ("
    "  id " ID ","
    "  consultation_id BIGINT NOT NULL REFERENCES consultations(id),"
    "  role " T " NOT NULL CHECK (role IN ('teacher','student','combined')),"
    "  file " T " NOT NULL,"
    "  state " T " NOT NULL CHECK (state IN ('recording','processing','ready',"
    "    'failed','empty','deleted')),"
    "  reason " T " NOT NULL DEFAULT '',"
    "  started_at BIGINT NOT NULL DEFAULT 0,"
    "  duration_ms BIGINT NOT NULL DEFAULT 0,"
    "  size BIGINT NOT NULL DEFAULT 0,"
    "  offset_ms BIGINT NOT NULL DEFAULT 0,"
    "  created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL,"
    "  UNIQUE (consultation_id, file));"
    "CREATE INDEX recordings_state ON recordings(state);"
    "CREATE TABLE mypage_recordings ("
    "  consultation_id BIGINT NOT NULL,"
    "  file " T " NOT NULL,"
    "  role " T " NOT NULL,"
    "  duration_ms BIGINT NOT NULL,"
    "  size BIGINT NOT NULL,"
    "  offset_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (consultation_id, file));"
    "CREATE TABLE consultd_nodes ("
    "  node_id " T " PRIMARY KEY,"
    "  url " T " NOT NULL DEFAULT '',"
    "  epoch BIGINT NOT NULL,"
    "  lease_until BIGINT NOT NULL,"
    "  started_at BIGINT NOT NULL,"
    "  renewed_at BIGINT NOT NULL,"
    "  streams BIGINT NOT NULL DEFAULT 0,"
    "  live BIGINT NOT NULL DEFAULT 0);",
    /* 2: media placement.  A consultation's media lives on one node (its
     * epoch recorded, so that a node that registered again does not
     * inherit it); a node offers room for max_live of them (0: no media)
     * unless it drains. */
    "ALTER TABLE consultations ADD COLUMN node_id " T ","
    "  ADD COLUMN node_epoch BIGINT NOT NULL DEFAULT 0;"
    "CREATE INDEX consultations_node ON consultations(node_id) WHERE node_id IS NOT NULL;"
    "ALTER TABLE consultd_nodes ADD COLUMN max_live BIGINT NOT NULL DEFAULT 0,"
    "  ADD COLUMN draining BOOLEAN NOT NULL DEFAULT false;",
    /* 3: the CPU a node reports (per mille of its machine, placement
     * avoids a hot node), and the node whose disk holds a recording's files
     * (a lost node's unfinished ones wait for it, or an admin's write-off). */
    "ALTER TABLE consultd_nodes ADD COLUMN cpu BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE recordings ADD COLUMN node_id " T " NOT NULL DEFAULT '';",
    /* 4: the recording store (see the SQLite schema's 8). */
    "ALTER TABLE recordings DROP CONSTRAINT recordings_state_check,"
    "  ADD CONSTRAINT recordings_state_check CHECK (state IN ('recording','processing',"
    "    'uploading','ready','failed','empty','deleted')),"
    "  ADD COLUMN store " T " NOT NULL DEFAULT '',"
    "  ADD COLUMN upload_id " T " NOT NULL DEFAULT '';",
    /* 5: the chat (see the SQLite schema's 9). */
    "CREATE TABLE messages ("
    "  id " ID ","
    "  consultation_id BIGINT NOT NULL REFERENCES consultations(id),"
    "  author_id BIGINT NOT NULL,"
    "  role " T " NOT NULL CHECK (role IN ('teacher','student')),"
    "  body " T " NOT NULL,"
    "  created_at BIGINT NOT NULL);"
    "CREATE INDEX messages_consultation ON messages(consultation_id, id);"
    "ALTER TABLE mypage ADD COLUMN messages BIGINT NOT NULL DEFAULT 0;",
    /* 6: the waiting line (see the SQLite schema's 10). */
    "CREATE TABLE line_entries ("
    "  id " ID ","
    "  teacher_id BIGINT NOT NULL REFERENCES users(id),"
    "  student_id BIGINT NOT NULL UNIQUE REFERENCES users(id),"
    "  joined_at BIGINT NOT NULL,"
    "  seen_at BIGINT NOT NULL);"
    "CREATE INDEX line_teacher ON line_entries(teacher_id, id);"
    "ALTER TABLE teachers ADD COLUMN line_open BIGINT NOT NULL DEFAULT 1;"
    "ALTER TABLE consultations ADD COLUMN from_line BIGINT NOT NULL DEFAULT 0;",
    /* 7: a consultation's events in order (see the SQLite schema's 11). */
    "CREATE INDEX events_consultation ON events(consultation_id, seq);",
};
G_STATIC_ASSERT(G_N_ELEMENTS(pg_migrations) == STORE_PG_SCHEMA_VERSION);

int
store_pg_schema_version(Store *s)
{
    return (int)store_scalar(
        s, store_stmt(s, "SELECT coalesce(max(version), 0) FROM consultd_schema"), -1);
}

/* Applies pending migrations under a session advisory lock, so that of
 * several nodes starting at once one migrates and the others wait and
 * then find nothing to do.  Without statement_timeout: a migration may
 * take longer than a request may. */
static gboolean
pg_migrate(Store *s, GError **error)
{
    if (!pg_exec(s, "SET statement_timeout = 0; SET lock_timeout = '60s'", error) ||
        !pg_exec(s, "SELECT pg_advisory_lock(" G_STRINGIFY(MIGRATE_LOCK) ")", error))
        return FALSE;
    gboolean ok =
        pg_exec(s, "CREATE TABLE IF NOT EXISTS consultd_schema (version INTEGER NOT NULL)", error);
    int have = ok ? store_pg_schema_version(s) : -1;
    if (ok && have < 0) {
        store_set_error(s, error, "schema version");
        ok = FALSE;
    }
    if (ok && have > STORE_PG_SCHEMA_VERSION) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED,
                    "database schema version %d is newer than this build (%d)", have,
                    STORE_PG_SCHEMA_VERSION);
        ok = FALSE;
    }
    for (int v = have; ok && v < STORE_PG_SCHEMA_VERSION; v++) {
        g_autofree char *bump = g_strdup_printf(
            "DELETE FROM consultd_schema; INSERT INTO consultd_schema VALUES (%d)", v + 1);
        ok = pg_exec(s, "BEGIN", error);
        if (ok && (!pg_exec(s, pg_migrations[v], error) || !pg_exec(s, bump, error) ||
                   !pg_exec(s, "COMMIT", error))) {
            pg_exec(s, "ROLLBACK", NULL);
            g_prefix_error(error, "migration %d: ", v + 1);
            ok = FALSE;
        }
        if (ok)
            g_info("storage: migrated the PostgreSQL schema to version %d", v + 1);
    }
    pg_exec(s, "SELECT pg_advisory_unlock(" G_STRINGIFY(MIGRATE_LOCK) ")", NULL);
    g_autofree char *reset = g_strdup_printf("SET statement_timeout = %d; SET lock_timeout = %d",
                                             s->pg->timeout_ms, s->pg->timeout_ms);
    pg_exec(s, reset, NULL);
    return ok;
}

static Store *
pg_open(const char *conninfo, const StoreOptions *opts, gboolean bare, GError **error)
{
    static const StoreOptions none = {0};
    if (!opts)
        opts = &none;
    g_autoptr(Store) s = store_new(STORE_KIND_PG, &store_pg_driver);
    StorePg *pg = s->pg = g_new0(StorePg, 1);
    pg->conninfo = g_strdup(conninfo);
    pg->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 1000;
    if (!opts->on_event)
        pg->timeout_ms = TOOL_TIMEOUT_MS;
    pg->connect_timeout_s = opts->connect_timeout_s > 0 ? opts->connect_timeout_s : 3;
    pg->node_id = g_strdup(opts->node_id);
    pg->node_url = g_strdup(opts->node_url ? opts->node_url : "");
    pg->on_event = opts->on_event;
    pg->data = opts->data;
    pg->listen = opts->on_event != NULL;
    pg->backoff_ms = BACKOFF_MIN_MS;
    char *vals[G_N_ELEMENTS(conn_keys)];
    conn_values(pg, vals);
    PGconn *c = PQconnectdbParams(conn_keys, (const char *const *)vals, 1);
    for (guint i = 0; vals[i]; i++)
        g_free(vals[i]);
    if (PQstatus(c) != CONNECTION_OK) {
        g_autofree char *why = g_strchomp(g_strdup(PQerrorMessage(c)));
        g_set_error(error, STORE_ERROR, STORE_ERROR_UNAVAILABLE, "cannot connect to PostgreSQL: %s",
                    why);
        PQfinish(c);
        return NULL;
    }
    if (!connected(s, c, TRUE)) {
        store_set_error(s, error, "PostgreSQL");
        return NULL;
    }
    if (bare)
        return g_steal_pointer(&s);
    if (opts->migrate && !pg_migrate(s, error))
        return NULL;
    int v = store_pg_schema_version(s);
    if (v != STORE_PG_SCHEMA_VERSION) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED,
                    "the PostgreSQL schema is at version %d, this build needs %d: run "
                    "`consultd migrate`",
                    v, STORE_PG_SCHEMA_VERSION);
        return NULL;
    }
    return g_steal_pointer(&s);
}

Store *
store_pg_open(const char *conninfo, const StoreOptions *opts, GError **error)
{
    return pg_open(conninfo, opts, FALSE, error);
}

/* Connected, nothing checked: for store_drop_all(). */
static Store *
store_pg_open_bare(const char *conninfo, GError **error)
{
    return pg_open(conninfo, NULL, TRUE, error);
}

/* ---------------------------------------------------------- node registry */

const char *
store_pg_node_id(Store *s)
{
    return s->kind == STORE_KIND_PG && s->pg->node_id ? s->pg->node_id : "";
}

gboolean
store_node_register(Store *s, GError **error)
{
    if (s->kind != STORE_KIND_PG || !s->pg->node_id)
        return TRUE;
    store_hold_first(s);
    StorePg *pg = s->pg;
    StoreStmt *st = store_stmt(
        s, "INSERT INTO consultd_nodes (node_id, url, epoch, lease_until, started_at, renewed_at,"
           " max_live)"
           " VALUES (?1, ?2, 1, consultd_now_ms() + ?3, consultd_now_ms(), consultd_now_ms(), ?5)"
           " ON CONFLICT (node_id) DO UPDATE SET url = excluded.url, max_live = excluded.max_live,"
           " draining = CASE WHEN ?4 <> 0 THEN false ELSE consultd_nodes.draining END,"
           " epoch = consultd_nodes.epoch + 1, lease_until = excluded.lease_until,"
           " renewed_at = excluded.renewed_at,"
           " started_at = CASE WHEN ?4 <> 0 THEN excluded.started_at"
           "              ELSE consultd_nodes.started_at END"
           " RETURNING epoch");
    store_bind_text(st, 1, pg->node_id);
    store_bind_text(st, 2, pg->node_url);
    store_bind_int64(st, 3, LEASE_MS);
    store_bind_int64(st, 4, pg->epoch == 0);
    store_bind_int64(st, 5, pg->max_live);
    gint64 epoch = store_step_id(s, st, error, "register node");
    if (epoch <= 0)
        return FALSE;
    if (pg->epoch)
        g_message("storage: node %s registered again with epoch %" G_GINT64_FORMAT
                  " (epoch %" G_GINT64_FORMAT " is fenced)",
                  pg->node_id, epoch, pg->epoch);
    pg->epoch = epoch;
    pg->fenced = FALSE;
    return TRUE;
}

gboolean
store_node_renew(Store *s, gint64 streams, gint64 live, gint64 cpu, GError **error)
{
    if (s->kind != STORE_KIND_PG || !s->pg->node_id)
        return TRUE;
    store_hold_first(s);
    StorePg *pg = s->pg;
    if (pg->fenced || !pg->epoch)
        return store_node_register(s, error);
    StoreStmt *st =
        store_stmt(s, "UPDATE consultd_nodes SET lease_until = consultd_now_ms() + ?3,"
                      " renewed_at = consultd_now_ms(), streams = ?4, live = ?5, cpu = ?6"
                      " WHERE node_id = ?1 AND epoch = ?2 AND lease_until > consultd_now_ms()"
                      " RETURNING draining");
    store_bind_text(st, 1, pg->node_id);
    store_bind_int64(st, 2, pg->epoch);
    store_bind_int64(st, 3, LEASE_MS);
    store_bind_int64(st, 4, streams);
    store_bind_int64(st, 5, live);
    store_bind_int64(st, 6, CLAMP(cpu, 0, 1000));
    int rc = store_step(st);
    if (rc == STORE_ROW) {
        pg->draining = store_col_int64(st, 0) != 0;
        store_stmt_reset(st);
        return TRUE;
    }
    store_stmt_reset(st);
    if (rc != STORE_DONE) {
        store_set_error(s, error, "renew lease");
        return FALSE;
    }
    g_warning("storage: node %s lost its lease (epoch %" G_GINT64_FORMAT "); registering again",
              pg->node_id, pg->epoch);
    pg->fenced = TRUE;
    return store_node_register(s, error);
}

void
store_node_set_url(Store *s, const char *url)
{
    if (s->kind != STORE_KIND_PG)
        return;
    g_free(s->pg->node_url);
    s->pg->node_url = g_strdup(url ? url : "");
}

void
store_node_set_capacity(Store *s, gint64 max_live)
{
    if (s->kind == STORE_KIND_PG)
        s->pg->max_live = max_live;
}

/* ------------------------------------------------------- media placement */

gboolean
store_consultation_place(Store *s, gint64 id, char **node_id, char **url, GError **error)
{
    *node_id = *url = NULL;
    if (s->kind != STORE_KIND_PG)
        return TRUE; /* one node: here */
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    StoreStmt *st = store_stmt(
        s,
        "SELECT coalesce(n.url, ''), n.node_id IS NOT NULL AND n.lease_until > consultd_now_ms(),"
        " coalesce(c.node_id, '')"
        " FROM consultations c LEFT JOIN consultd_nodes n"
        "   ON n.node_id = c.node_id AND n.epoch = c.node_epoch"
        " WHERE c.id = ?1");
    store_bind_int64(st, 1, id);
    int rc = store_step(st);
    gboolean ok = rc == STORE_ROW;
    if (rc == STORE_DONE)
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no such consultation");
    else if (!ok)
        store_set_error(s, error, "placement");
    if (ok && store_col_int64(st, 1)) { /* placed on a serving node already */
        *node_id = store_col_strdup(st, 2);
        *url = store_col_strdup(st, 0);
        store_stmt_reset(st);
        return store_autocommit(s, began, TRUE, error);
    }
    store_stmt_reset(st);
    /* The least-loaded serving node with room: not a hot one while another
     * has CPU to spare, then the fewest consultations (each costs about
     * the same), then the least CPU (a node busy combining or repairing
     * recordings), ties by name.  Under the writers' lock, so a burst of
     * accepts sees each placement before it. */
    StoreStmt *pick =
        ok ? store_stmt(
                 s, "WITH load AS (SELECT n.node_id, n.epoch, n.url, n.max_live, n.cpu,"
                    "  (SELECT count(*) FROM consultations c WHERE c.node_id = n.node_id"
                    "   AND c.node_epoch = n.epoch AND c.status IN ('live', 'interrupted')) AS live"
                    "  FROM consultd_nodes n WHERE n.lease_until > consultd_now_ms() AND NOT "
                    "n.draining)"
                    " SELECT node_id, epoch, url FROM load WHERE live < max_live"
                    " ORDER BY cpu >= ?1, live, cpu, node_id LIMIT 1")
           : NULL;
    if (ok) {
        store_bind_int64(pick, 1, STORE_NODE_CPU_HOT);
        rc = store_step(pick);
        if (rc == STORE_DONE) {
            g_set_error(error, STORE_ERROR, STORE_ERROR_FULL,
                        "no node has room for another consultation's media");
            ok = FALSE;
        } else if (rc != STORE_ROW) {
            store_set_error(s, error, "placement");
            ok = FALSE;
        }
    }
    if (ok) {
        *node_id = store_col_strdup(pick, 0);
        *url = store_col_strdup(pick, 2);
        gint64 epoch = store_col_int64(pick, 1);
        store_stmt_reset(pick);
        StoreStmt *up =
            store_stmt(s, "UPDATE consultations SET node_id = ?2, node_epoch = ?3 WHERE id = ?1");
        store_bind_int64(up, 1, id);
        store_bind_text(up, 2, *node_id);
        store_bind_int64(up, 3, epoch);
        ok = store_step_done(s, up, error, "placement");
    }
    if (!store_autocommit(s, began, ok, error)) {
        g_clear_pointer(node_id, g_free);
        g_clear_pointer(url, g_free);
        return FALSE;
    }
    return TRUE;
}

/* Inside a transaction: ID loses its placement; if it was live it becomes
 * interrupted for REASON (with its event). */
static gboolean
unplace(Store *s, gint64 id, gboolean was_live, const char *reason, GError **error)
{
    if (was_live && !store_consultation_transition(s, id, STORE_CONSULT_INTERRUPTED, reason, error))
        return FALSE;
    if (s->kind != STORE_KIND_PG)
        return TRUE;
    StoreStmt *up =
        store_stmt(s, "UPDATE consultations SET node_id = NULL, node_epoch = 0 WHERE id = ?1");
    store_bind_int64(up, 1, id);
    return store_step_done(s, up, error, "clear placement");
}

gint64
store_consultations_orphans_interrupt(Store *s, GError **error)
{
    if (s->kind != STORE_KIND_PG)
        return 0;
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return -1;
    StoreStmt *st = store_stmt(
        s, "SELECT c.id, c.status = 'live' FROM consultations c LEFT JOIN consultd_nodes n"
           "   ON n.node_id = c.node_id AND n.epoch = c.node_epoch"
           " WHERE c.node_id IS NOT NULL AND c.status IN ('live', 'interrupted')"
           "   AND (n.node_id IS NULL OR n.lease_until <= consultd_now_ms())"
           " ORDER BY c.id");
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(gint64));
    g_autoptr(GArray) live = g_array_new(FALSE, FALSE, sizeof(gboolean));
    int rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        gint64 id = store_col_int64(st, 0);
        gboolean l = store_col_int64(st, 1) != 0;
        g_array_append_val(ids, id);
        g_array_append_val(live, l);
    }
    gboolean ok = rc == STORE_DONE;
    if (!ok)
        store_set_error(s, error, "orphaned consultations");
    gint64 n = 0;
    for (guint i = 0; ok && i < ids->len; i++) {
        gboolean was_live = g_array_index(live, gboolean, i);
        ok = unplace(s, g_array_index(ids, gint64, i), was_live, "node_lost", error);
        n += was_live;
    }
    if (!store_autocommit(s, began, ok, error))
        return -1;
    return n;
}

gboolean
store_node_set_draining(Store *s, const char *node_id, gboolean on, GError **error)
{
    if (s->kind != STORE_KIND_PG) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "one node: no registry");
        return FALSE;
    }
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    StoreStmt *st =
        store_stmt(s, "UPDATE consultd_nodes SET draining = ?2 <> 0 WHERE node_id = ?1");
    store_bind_text(st, 1, node_id);
    store_bind_int64(st, 2, on);
    gboolean ok = store_step_done(s, st, error, "drain");
    if (ok && store_changes(s) == 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no node %s", node_id);
        ok = FALSE;
    }
    if (ok && s->pg->node_id && !strcmp(node_id, s->pg->node_id))
        s->pg->draining = on;
    return store_autocommit(s, began, ok, error);
}

gboolean
store_node_draining(Store *s)
{
    return s->kind == STORE_KIND_PG && s->pg->draining;
}

GArray *
store_consultations_here(Store *s)
{
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(gint64));
    StoreStmt *st;
    if (s->kind == STORE_KIND_PG) {
        st = store_stmt(s, "SELECT id FROM consultations WHERE node_id = ?1 AND node_epoch = ?2"
                           " AND status IN ('live', 'interrupted') ORDER BY id");
        store_bind_text(st, 1, s->pg->node_id ? s->pg->node_id : "");
        store_bind_int64(st, 2, s->pg->epoch);
    } else { /* one node: every open consultation is here */
        st = store_stmt(s, "SELECT id FROM consultations WHERE status IN ('live', 'interrupted')"
                           " ORDER BY id");
    }
    while (store_step(st) == STORE_ROW) {
        gint64 id = store_col_int64(st, 0);
        g_array_append_val(ids, id);
    }
    store_stmt_reset(st);
    return ids;
}

gboolean
store_consultation_unplace(Store *s, gint64 id, const char *reason, GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    g_autoptr(StoreConsultation) c = store_consultation_get(s, id, error);
    gboolean ok = c != NULL;
    if (ok && (c->status == STORE_CONSULT_LIVE || c->status == STORE_CONSULT_INTERRUPTED))
        ok = unplace(s, id, c->status == STORE_CONSULT_LIVE, reason, error);
    return store_autocommit(s, began, ok, error);
}

gint64
store_node_epoch(Store *s)
{
    return s->kind == STORE_KIND_PG ? s->pg->epoch : 0;
}

void
store_node_free(StoreNode *n)
{
    if (!n)
        return;
    g_free(n->node_id);
    g_free(n->url);
    g_free(n);
}

static StoreNode *
node_from_row(StoreStmt *st)
{
    StoreNode *n = g_new0(StoreNode, 1);
    n->node_id = store_col_strdup(st, 0);
    n->url = store_col_strdup(st, 1);
    n->epoch = store_col_int64(st, 2);
    n->lease_left_ms = store_col_int64(st, 3);
    n->started_at = store_col_int64(st, 4);
    n->renewed_at = store_col_int64(st, 5);
    n->streams = store_col_int64(st, 6);
    n->live = store_col_int64(st, 7);
    n->max_live = store_col_int64(st, 8);
    n->draining = store_col_int64(st, 9) != 0;
    n->placed = store_col_int64(st, 10);
    n->cpu = store_col_int64(st, 11);
    return n;
}

GPtrArray *
store_nodes_list(Store *s, GError **error)
{
    if (s->kind != STORE_KIND_PG)
        return g_ptr_array_new_with_free_func((GDestroyNotify)store_node_free);
    StoreStmt *st = store_stmt(s, "SELECT node_id, url, epoch, lease_until - consultd_now_ms(),"
                                  " started_at, renewed_at, streams, live, max_live, draining,"
                                  " (SELECT count(*) FROM consultations c WHERE c.node_id ="
                                  "  n.node_id AND c.node_epoch = n.epoch"
                                  "  AND c.status IN ('live', 'interrupted')), cpu"
                                  " FROM consultd_nodes n ORDER BY node_id");
    return STORE_COLLECT(s, st, node_from_row, store_node_free, "list nodes", error);
}

gboolean
store_available(Store *s)
{
    return s->kind != STORE_KIND_PG || s->pg->conn != NULL;
}

gboolean
store_drop_all(const char *conninfo, GError **error)
{
    g_autoptr(Store) s = store_pg_open_bare(conninfo, error);
    return s && pg_exec(s, "DROP SCHEMA public CASCADE; CREATE SCHEMA public", error);
}
