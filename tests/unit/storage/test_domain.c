/* Unit tests for storage/store_domain.c and store_events.c: the state
 * machines, their events, the dispatcher and the read models. */
#include <glib/gstdio.h>
#include <string.h>

#include "fiber.h"
#include "store.h"
#include "../tmpdir.h"

typedef struct {
    char *dir;
    Store *s;
    gint64 teacher, student, student2;
} Fx;

static void
setup(Fx *f, gconstpointer data)
{
    f->dir = g_dir_make_tmp("domain-test-XXXXXX", NULL);
    /* CONSULTD_TEST_DATABASE (a PostgreSQL URL) runs the same tests on
     * PostgreSQL, each on an emptied database. */
    const char *db = g_getenv("CONSULTD_TEST_DATABASE");
    if (db && *db) {
        g_autoptr(GError) err = NULL;
        if (!store_drop_all(db, &err))
            g_error("%s", err->message);
        StoreOptions o = {.migrate = TRUE};
        f->s = store_open_database(db, f->dir, &o, &err);
        if (!f->s)
            g_error("%s", err->message);
    } else {
        f->s = store_open(f->dir, NULL);
    }
    g_assert_nonnull(f->s);
    f->teacher = store_user_add(f->s, "t", STORE_ROLE_TEACHER, "Teacher", "", "h", NULL);
    f->student = store_user_add(f->s, "s", STORE_ROLE_STUDENT, "Student", "", "h", NULL);
    f->student2 = store_user_add(f->s, "s2", STORE_ROLE_STUDENT, "Student2", "", "h", NULL);
}

static void
teardown(Fx *f, gconstpointer data)
{
    store_close(f->s);
    tmpdir_remove(f->dir);
}

/* The types of all events, space-separated. */
static char *
event_types(Store *s)
{
    g_autoptr(GPtrArray) evs = store_events_range(s, 0, 0, 1000, NULL);
    GString *out = g_string_new(NULL);
    for (guint i = 0; i < evs->len; i++)
        g_string_append_printf(out, "%s%s", i ? " " : "", ((StoreEvent *)evs->pdata[i])->type);
    return g_string_free(out, FALSE);
}

static void
online(Fx *f)
{
    gboolean changed;
    g_assert_true(
        store_teacher_set_presence(f->s, f->teacher, STORE_PRESENCE_ONLINE, &changed, NULL));
}

static void
test_request_needs_online_teacher(Fx *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;
    g_assert_null(store_consultation_request(f->s, f->student, f->teacher, &err));
    g_assert_error(err, STORE_ERROR, STORE_ERROR_TEACHER_OFFLINE);
    g_clear_error(&err);
    g_assert_null(store_consultation_request(f->s, f->student, 9999, &err));
    g_assert_error(err, STORE_ERROR, STORE_ERROR_NOT_FOUND);
    g_clear_error(&err);
    online(f);
    g_autoptr(StoreConsultation) c = store_consultation_request(f->s, f->student, f->teacher, &err);
    g_assert_no_error(err);
    g_assert_cmpint(c->status, ==, STORE_CONSULT_REQUESTED);
    g_assert_null(store_consultation_request(f->s, f->student2, f->teacher, &err));
    g_assert_error(err, STORE_ERROR, STORE_ERROR_TEACHER_BUSY);
    g_clear_error(&err);
    g_autofree char *types = event_types(f->s);
    g_assert_cmpstr(types, ==, "teacher.online consultation.requested teacher.busy");
}

static void
test_transition_table(Fx *f, gconstpointer data)
{
    /* Every (from, to) pair: legal ones succeed with the right event, the
     * rest fail with BAD_STATE and change nothing. */
    static const struct {
        StoreConsultStatus to;
        const char *path; /* the transitions to reach FROM first */
    } froms[] = {{STORE_CONSULT_REQUESTED, ""},     {STORE_CONSULT_LIVE, "L"},
                 {STORE_CONSULT_INTERRUPTED, "LI"}, {STORE_CONSULT_ENDED, "LE"},
                 {STORE_CONSULT_DECLINED, "D"},     {STORE_CONSULT_CANCELED, "C"},
                 {STORE_CONSULT_EXPIRED, "X"}};
    const char *legal[] = {"requested>live",    "requested>declined", "requested>canceled",
                           "requested>expired", "live>ended",         "live>interrupted",
                           "interrupted>live",  "interrupted>ended",  NULL};
    for (guint i = 0; i < G_N_ELEMENTS(froms); i++) {
        for (int to = 0; to <= STORE_CONSULT_INTERRUPTED; to++) {
            online(f);
            g_autoptr(StoreConsultation) c =
                store_consultation_request(f->s, f->student, f->teacher, NULL);
            g_assert_nonnull(c);
            for (const char *p = froms[i].path; *p; p++) {
                StoreConsultStatus st = *p == 'L'   ? STORE_CONSULT_LIVE
                                        : *p == 'I' ? STORE_CONSULT_INTERRUPTED
                                        : *p == 'E' ? STORE_CONSULT_ENDED
                                        : *p == 'D' ? STORE_CONSULT_DECLINED
                                        : *p == 'C' ? STORE_CONSULT_CANCELED
                                                    : STORE_CONSULT_EXPIRED;
                g_assert_true(store_consultation_transition(f->s, c->id, st, "x", NULL));
            }
            g_autofree char *pair = g_strdup_printf("%s>%s", store_consult_status_name(froms[i].to),
                                                    store_consult_status_name(to));
            gint64 seq = store_events_last_seq(f->s);
            g_autoptr(GError) err = NULL;
            gboolean ok = store_consultation_transition(f->s, c->id, to, "x", &err);
            g_assert_cmpint(ok, ==, g_strv_contains(legal, pair));
            if (!ok) {
                g_assert_error(err, STORE_ERROR, STORE_ERROR_BAD_STATE);
                g_assert_cmpint(store_events_last_seq(f->s), ==, seq);
            }
            /* Close it so the teacher is free for the next round. */
            g_autoptr(StoreConsultation) now = store_consultation_get(f->s, c->id, NULL);
            if (now->status == STORE_CONSULT_REQUESTED)
                store_consultation_transition(f->s, c->id, STORE_CONSULT_CANCELED, "x", NULL);
            else if (now->status == STORE_CONSULT_LIVE || now->status == STORE_CONSULT_INTERRUPTED)
                store_consultation_transition(f->s, c->id, STORE_CONSULT_ENDED, "x", NULL);
            g_autoptr(StoreTeacher) t = store_teacher_get(f->s, f->teacher, 0, NULL);
            g_assert_cmpint(t->status, ==, STORE_PRESENCE_ONLINE);
        }
    }
}

static void
test_dispatch_projects_once(Fx *f, gconstpointer data)
{
    gboolean changed;
    const char *urls[] = {"http://127.0.0.1:1/a", "http://127.0.0.1:1/b", NULL};
    g_assert_true(store_favorite_set(f->s, f->student, f->teacher, TRUE, &changed, NULL));
    g_assert_true(changed);
    g_assert_true(store_favorite_set(f->s, f->student, f->teacher, TRUE, &changed, NULL));
    g_assert_false(changed); /* idempotent: no second event */
    online(f);
    g_autoptr(StoreConsultation) c = store_consultation_request(f->s, f->student, f->teacher, NULL);
    store_consultation_transition(f->s, c->id, STORE_CONSULT_LIVE, NULL, NULL);
    store_consultation_transition(f->s, c->id, STORE_CONSULT_ENDED, "done", NULL);

    g_autoptr(StoreTeacher) before = store_teacher_get(f->s, f->teacher, f->student, NULL);
    g_assert_cmpint(before->popularity, ==, 0); /* read model not yet fed */
    g_assert_true(before->favorite);            /* write model is immediate */

    g_autoptr(GPtrArray) evs = store_dispatch(f->s, 3, urls, NULL);
    g_assert_cmpuint(evs->len, ==, 3);
    g_autoptr(GPtrArray) rest = store_dispatch(f->s, 100, urls, NULL);
    g_autoptr(GPtrArray) none = store_dispatch(f->s, 100, urls, NULL);
    g_assert_cmpuint(none->len, ==, 0);
    gint64 last = store_events_last_seq(f->s);
    g_assert_cmpint(evs->len + rest->len, ==, last);
    g_assert_cmpint(store_cursor(f->s, "projections"), ==, last);
    g_assert_cmpint(store_cursor(f->s, "notify"), ==, last);

    g_autoptr(StoreTeacher) t = store_teacher_get(f->s, f->teacher, 0, NULL);
    g_assert_cmpint(t->popularity, ==, 1);
    g_assert_cmpint(t->consultation_count, ==, 1);
    g_autoptr(GPtrArray) page = store_mypage(f->s, f->student, NULL);
    g_assert_cmpuint(page->len, ==, 1);
    StoreMyPageRow *row = page->pdata[0];
    g_assert_cmpint(row->status, ==, STORE_CONSULT_ENDED);
    g_assert_cmpstr(row->end_reason, ==, "done");
    g_assert_cmpint(row->started_at, >, 0);
    g_autoptr(GPtrArray) ds = store_deliveries_claim(f->s, store_now_ms() + 1, 0, 1000);
    g_assert_cmpint(ds->len, ==, 2 * last); /* one per event per URL */

    /* Rebuilding gives the same read model and queues no webhook again. */
    g_assert_true(store_rebuild_projections(f->s, NULL));
    g_autoptr(StoreTeacher) t2 = store_teacher_get(f->s, f->teacher, 0, NULL);
    g_assert_cmpint(t2->popularity, ==, 1);
    g_assert_cmpint(t2->consultation_count, ==, 1);
    g_autoptr(GPtrArray) ds2 = store_deliveries_claim(f->s, store_now_ms() + 1, 0, 1000);
    g_assert_cmpuint(ds2->len, ==, ds->len);
}

/* A favorite toggled on and off in one batch moves the read model twice and
 * notifies nobody (issue 20: toggles coalesce); a toggle that stays on is
 * notified once. */
static void
test_toggles_coalesce(Fx *f, gconstpointer data)
{
    gboolean changed;
    const char *urls[] = {"http://127.0.0.1:1/a", NULL};
    for (int i = 0; i < 5; i++) {
        g_assert_true(store_favorite_set(f->s, f->student, f->teacher, TRUE, &changed, NULL));
        g_assert_true(store_favorite_set(f->s, f->student, f->teacher, FALSE, &changed, NULL));
    }
    g_assert_true(store_favorite_set(f->s, f->student, f->teacher, TRUE, &changed, NULL));
    g_autoptr(GPtrArray) evs = store_dispatch(f->s, 100, urls, NULL);
    g_assert_cmpuint(evs->len, ==, 1);
    g_assert_cmpstr(((StoreEvent *)evs->pdata[0])->type, ==, "teacher.favorited");
    g_autoptr(GPtrArray) ds = store_deliveries_claim(f->s, store_now_ms() + 1, 0, 100);
    g_assert_cmpuint(ds->len, ==, 1);
    g_autoptr(StoreTeacher) t = store_teacher_get(f->s, f->teacher, 0, NULL);
    g_assert_cmpint(t->popularity, ==, 1);
    g_assert_cmpint(store_cursor(f->s, "notify"), ==, store_events_last_seq(f->s));
}

static void
test_delivery_results(Fx *f, gconstpointer data)
{
    const char *urls[] = {"http://127.0.0.1:1/a", NULL};
    online(f);
    g_autoptr(GPtrArray) evs = store_dispatch(f->s, 10, urls, NULL);
    g_autoptr(GPtrArray) ds = store_deliveries_claim(f->s, store_now_ms() + 1, 0, 10);
    g_assert_cmpuint(ds->len, ==, 1);
    gint64 id = ((StoreDelivery *)ds->pdata[0])->id;
    gint64 later = store_now_ms() + 60000;
    g_assert_true(store_delivery_result(f->s, id, FALSE, "HTTP 500", later, NULL));
    g_autoptr(GPtrArray) none = store_deliveries_claim(f->s, store_now_ms() + 1, 0, 10);
    g_assert_cmpuint(none->len, ==, 0); /* backing off */
    g_autoptr(GPtrArray) due = store_deliveries_claim(f->s, later, 0, 10);
    g_assert_cmpuint(due->len, ==, 1);
    g_assert_true(store_delivery_result(f->s, id, TRUE, NULL, 0, NULL));
    g_autoptr(GPtrArray) all = store_deliveries_list(f->s, 10, NULL);
    StoreDelivery *d = all->pdata[0];
    g_assert_cmpstr(d->state, ==, "delivered");
    g_assert_cmpint(d->attempts, ==, 2);
}

/* PostgreSQL only: another Store on the same database, as another node
 * (NODE_ID) or a tool (NULL). */
static Store *
other(Fx *f, const char *node_id)
{
    StoreOptions o = {.migrate = TRUE, .node_id = node_id};
    g_autoptr(GError) err = NULL;
    Store *s = store_open_database(g_getenv("CONSULTD_TEST_DATABASE"), f->dir, &o, &err);
    if (!s)
        g_error("%s", err->message);
    return s;
}

static gboolean
on_pg(void)
{
    if (g_getenv("CONSULTD_TEST_DATABASE"))
        return TRUE;
    g_test_skip("PostgreSQL only (CONSULTD_TEST_DATABASE)");
    return FALSE;
}

/* Fencing: a node's older incarnation (the same node id, registered again
 * since) writes nothing; it writes again once it has registered anew, and
 * then the other is the stale one. */
static void
test_fencing(Fx *f, gconstpointer data)
{
    if (!on_pg())
        return;
    g_autoptr(Store) a = other(f, "x");
    g_autoptr(Store) b = other(f, "x");
    g_assert_true(store_node_register(a, NULL));
    g_assert_true(store_node_register(b, NULL));
    g_assert_cmpint(store_node_epoch(a), ==, 1);
    g_assert_cmpint(store_node_epoch(b), ==, 2);
    gboolean changed;
    g_autoptr(GError) err = NULL;
    gint64 before = store_events_last_seq(f->s);
    g_assert_false(store_favorite_set(a, f->student, f->teacher, TRUE, &changed, &err));
    g_assert_error(err, STORE_ERROR, STORE_ERROR_FENCED);
    g_assert_cmpint(store_events_last_seq(f->s), ==, before); /* nothing landed */
    g_assert_true(store_favorite_set(b, f->student, f->teacher, TRUE, &changed, NULL));
    /* a renews: its lease is gone, so it registers again (epoch 3). */
    g_assert_true(store_node_renew(a, 0, 0, 0, NULL));
    g_assert_cmpint(store_node_epoch(a), ==, 3);
    g_assert_true(store_favorite_set(a, f->student2, f->teacher, TRUE, &changed, NULL));
    g_clear_error(&err);
    g_assert_false(store_favorite_set(b, f->student, f->teacher, FALSE, &changed, &err));
    g_assert_error(err, STORE_ERROR, STORE_ERROR_FENCED);
    g_autoptr(GPtrArray) nodes = store_nodes_list(f->s, NULL);
    g_assert_cmpuint(nodes->len, ==, 1);
    g_assert_cmpint(((StoreNode *)nodes->pdata[0])->epoch, ==, 3);
}

/* Two nodes claiming deliveries at once get disjoint sets. */
static void
test_claims_are_disjoint(Fx *f, gconstpointer data)
{
    if (!on_pg())
        return;
    const char *urls[] = {"http://127.0.0.1:1/a", "http://127.0.0.1:1/b", NULL};
    online(f);
    g_autoptr(GPtrArray) evs = store_dispatch(f->s, 10, urls, NULL);
    g_assert_cmpuint(evs->len, ==, 1);
    g_autoptr(Store) b = other(f, NULL);
    g_autoptr(GPtrArray) x = store_deliveries_claim(f->s, store_now_ms() + 1, 60000, 1);
    g_autoptr(GPtrArray) y = store_deliveries_claim(b, store_now_ms() + 1, 60000, 5);
    g_autoptr(GPtrArray) z = store_deliveries_claim(f->s, store_now_ms() + 1, 60000, 5);
    g_assert_cmpuint(x->len, ==, 1);
    g_assert_cmpuint(y->len, ==, 1);
    g_assert_cmpuint(z->len, ==, 0);
    g_assert_cmpint(((StoreDelivery *)x->pdata[0])->id, !=, ((StoreDelivery *)y->pdata[0])->id);
}

/* Events appended through two connections read back as one gap-free
 * sequence in commit order, the same from either. */
static void
test_one_event_order(Fx *f, gconstpointer data)
{
    if (!on_pg())
        return;
    g_autoptr(Store) b = other(f, NULL);
    gboolean changed;
    for (int i = 0; i < 10; i++) {
        Store *w = i % 2 ? b : f->s;
        g_assert_true(store_favorite_set(w, f->student, f->teacher, i % 2 == 0, &changed, NULL));
        g_assert_true(changed);
    }
    g_autoptr(GPtrArray) ea = store_events_range(f->s, 0, 0, 100, NULL);
    g_autoptr(GPtrArray) eb = store_events_range(b, 0, 0, 100, NULL);
    g_assert_cmpuint(ea->len, ==, 10);
    g_assert_cmpuint(eb->len, ==, 10);
    for (guint i = 0; i < ea->len; i++) {
        g_assert_cmpint(((StoreEvent *)ea->pdata[i])->seq, ==, i + 1);
        g_assert_cmpint(((StoreEvent *)eb->pdata[i])->seq, ==, i + 1);
    }
}

/* In a server on PostgreSQL the store lends its connection to one fiber
 * at a time: fibers waiting for replies leave the loop free, each fiber's
 * statements run as one block (its events are contiguous), and a caller on
 * the loop's own stack first runs whoever holds the connection to its
 * end. */
typedef struct {
    Store *s;
    gint64 student, teacher;
    int round; /* round 0 leaves the favorite set: round 1 starts unsetting */
    gboolean ok;
} Turn;

static void
noop_event(gpointer data, gboolean reconnected)
{
}

static void
toggle_five(gpointer data)
{
    Turn *t = data;
    gboolean changed;
    t->ok = TRUE;
    for (int i = 0; i < 5; i++)
        t->ok = t->ok &&
                store_favorite_set(t->s, t->student, t->teacher, (i + t->round) % 2 == 0, &changed,
                                   NULL) &&
                changed;
}

static gboolean
count_turn(gpointer data)
{
    (*(guint *)data)++;
    return G_SOURCE_CONTINUE;
}

static void
test_fibers_take_turns(Fx *f, gconstpointer data)
{
    if (!on_pg())
        return;
    StoreOptions o = {.on_event = noop_event};
    g_autoptr(GError) err = NULL;
    g_autoptr(Store) s = store_open_database(g_getenv("CONSULTD_TEST_DATABASE"), f->dir, &o, &err);
    g_assert_no_error(err);
    g_assert_true(store_waits_in_fibers(s));
    for (int round = 0; round < 2; round++) {
        Turn a = {s, f->student, f->teacher, round}, b = {s, f->student2, f->teacher, round};
        g_assert_false(fiber_run(toggle_five, &a, NULL)); /* asleep on a reply */
        g_assert_false(fiber_run(toggle_five, &b, NULL)); /* asleep on its turn */
        g_assert_cmpuint(fiber_count(), ==, 2);
        if (round == 0) {
            guint turns = 0;
            guint idle = g_idle_add(count_turn, &turns);
            while (fiber_count() > 0)
                g_main_context_iteration(NULL, TRUE);
            g_source_remove(idle);
            g_assert_cmpuint(turns, >, 0); /* the loop ran while they waited */
        } else {
            /* The loop's stack cannot wait: it runs both to their ends. */
            g_assert_cmpint(store_events_last_seq(s), ==, 20);
            g_assert_cmpuint(fiber_count(), ==, 0);
        }
        g_assert_true(a.ok);
        g_assert_true(b.ok);
    }
    g_autoptr(GPtrArray) evs = store_events_range(s, 0, 0, 100, NULL);
    g_assert_cmpuint(evs->len, ==, 20);
    for (guint i = 0; i < evs->len; i++) {
        StoreEvent *e = evs->pdata[i];
        g_assert_cmpint(e->seq, ==, i + 1);
        g_assert_cmpint(e->student_id, ==, (i / 5) % 2 ? f->student2 : f->student);
    }
}

/* The node's lease goes ahead of the fibers already waiting for the
 * connection: a queue of requests must not let it run out. */
typedef struct {
    Turn t;
    GString *order;
    char name;
} Named;

static void
renew(gpointer data)
{
    Named *n = data;
    n->t.ok = store_node_renew(n->t.s, 0, 0, 0, NULL);
}

static void
toggle_named(gpointer data)
{
    toggle_five(&((Named *)data)->t);
}

static void
ended(gpointer data)
{
    Named *n = data;
    g_string_append_c(n->order, n->name);
}

static void
test_lease_goes_first(Fx *f, gconstpointer data)
{
    if (!on_pg())
        return;
    StoreOptions o = {.on_event = noop_event, .node_id = "n"};
    g_autoptr(GError) err = NULL;
    g_autoptr(Store) s = store_open_database(g_getenv("CONSULTD_TEST_DATABASE"), f->dir, &o, &err);
    g_assert_no_error(err);
    g_assert_true(store_node_register(s, NULL));
    g_autoptr(GString) order = g_string_new(NULL);
    Named a = {{s, f->student, f->teacher}, order, 'a'};
    Named b = {{s, f->student2, f->teacher}, order, 'b'};
    Named l = {{s}, order, 'L'};
    g_assert_false(fiber_run(toggle_named, &a, ended));
    g_assert_false(fiber_run(toggle_named, &b, ended));
    g_assert_false(fiber_run(renew, &l, ended));
    while (fiber_count() > 0)
        g_main_context_iteration(NULL, TRUE);
    g_assert_cmpstr(order->str, ==, "aLb");
    g_assert_true(a.t.ok && b.t.ok && l.t.ok);
}

/* A live consultation of a new teacher and student, placed: its node. */
static char *
place_one(Fx *f, int k)
{
    g_autofree char *tn = g_strdup_printf("pt%d", k), *sn = g_strdup_printf("ps%d", k);
    gint64 t = store_user_add(f->s, tn, STORE_ROLE_TEACHER, tn, "", "h", NULL);
    gint64 st = store_user_add(f->s, sn, STORE_ROLE_STUDENT, sn, "", "h", NULL);
    gboolean changed;
    g_assert_true(store_teacher_set_presence(f->s, t, STORE_PRESENCE_ONLINE, &changed, NULL));
    g_autoptr(StoreConsultation) c = store_consultation_request(f->s, st, t, NULL);
    g_assert_nonnull(c);
    g_assert_true(store_consultation_transition(f->s, c->id, STORE_CONSULT_LIVE, NULL, NULL));
    char *node = NULL, *url = NULL;
    g_autoptr(GError) err = NULL;
    g_assert_true(store_consultation_place(f->s, c->id, &node, &url, &err));
    g_assert_no_error(err);
    g_free(url);
    return node;
}

/* Placement: a hot node (CPU at or over STORE_NODE_CPU_HOT) only when all
 * are; else the fewest consultations, then the least CPU. */
static void
test_placement_weighs_cpu(Fx *f, gconstpointer data)
{
    if (!on_pg())
        return;
    Store *n[3];
    const char *ids[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        n[i] = other(f, ids[i]);
        store_node_set_capacity(n[i], 10);
        g_assert_true(store_node_register(n[i], NULL));
    }
    const gint64 cpu[3] = {950, 300, 100};
    for (int i = 0; i < 3; i++)
        g_assert_true(store_node_renew(n[i], 0, 0, cpu[i], NULL));
    const char *want[] = {"c", "b", "c", "b"};
    for (int k = 0; k < 4; k++) {
        g_autofree char *got = place_one(f, k);
        g_assert_cmpstr(got, ==, want[k]);
    }
    /* All hot: the fewest consultations wins, hot or not. */
    for (int i = 1; i < 3; i++)
        g_assert_true(store_node_renew(n[i], 0, 0, 990, NULL));
    g_autofree char *got = place_one(f, 4);
    g_assert_cmpstr(got, ==, "a");
    g_autoptr(GPtrArray) nodes = store_nodes_list(f->s, NULL);
    g_assert_cmpint(((StoreNode *)nodes->pdata[0])->cpu, ==, 950);
    g_assert_cmpint(((StoreNode *)nodes->pdata[0])->placed, ==, 1);
    for (int i = 0; i < 3; i++)
        store_close(n[i]);
}

/* A shared screen's events are facts, not presence, and who shares now is
 * read back from them, per participant. */
static void
test_screen_events(Fx *f, gconstpointer data)
{
    online(f);
    g_autoptr(StoreConsultation) c = store_consultation_request(f->s, f->student, f->teacher, NULL);
    g_assert_nonnull(c);
    g_assert_true(store_consultation_transition(f->s, c->id, STORE_CONSULT_LIVE, NULL, NULL));
    g_assert_cmpuint(store_consultation_screens(f->s, c->id), ==, 0);
    g_assert_true(store_participant_event(f->s, c->id, CONSULTD_ROLE_TEACHER,
                                          CONSULTD_STREAM_CAMERA, TRUE, NULL, NULL));
    g_assert_true(store_participant_event(f->s, c->id, CONSULTD_ROLE_TEACHER,
                                          CONSULTD_STREAM_SCREEN, TRUE, NULL, NULL));
    g_assert_true(store_participant_event(f->s, c->id, CONSULTD_ROLE_STUDENT,
                                          CONSULTD_STREAM_SCREEN, TRUE, NULL, NULL));
    g_assert_cmpuint(store_consultation_screens(f->s, c->id), ==,
                     (1u << CONSULTD_ROLE_TEACHER) | (1u << CONSULTD_ROLE_STUDENT));
    g_assert_true(store_participant_event(f->s, c->id, CONSULTD_ROLE_TEACHER,
                                          CONSULTD_STREAM_SCREEN, FALSE, "deleted", NULL));
    g_assert_cmpuint(store_consultation_screens(f->s, c->id), ==, 1u << CONSULTD_ROLE_STUDENT);
    g_autofree char *types = event_types(f->s);
    g_assert_true(g_str_has_suffix(types, "participant.joined screen.started screen.started"
                                          " screen.stopped"));
    g_autoptr(GPtrArray) evs = store_events_range(f->s, 0, 0, 1000, NULL);
    StoreEvent *last = evs->pdata[evs->len - 1];
    g_assert_nonnull(strstr(last->payload, "\"role\":\"teacher\",\"stream\":\"screen\""));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define T(name, fn) g_test_add("/domain/" name, Fx, NULL, setup, fn, teardown)
    T("toggles-coalesce", test_toggles_coalesce);
    T("request-needs-online-teacher", test_request_needs_online_teacher);
    T("transition-table", test_transition_table);
    T("dispatch-projects-once", test_dispatch_projects_once);
    T("delivery-results", test_delivery_results);
    T("fencing", test_fencing);
    T("claims-are-disjoint", test_claims_are_disjoint);
    T("one-event-order", test_one_event_order);
    T("fibers-take-turns", test_fibers_take_turns);
    T("lease-goes-first", test_lease_goes_first);
    T("placement-weighs-cpu", test_placement_weighs_cpu);
    T("screen-events", test_screen_events);
#undef T
    return g_test_run();
}
