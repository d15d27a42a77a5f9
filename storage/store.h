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

#include "vocab.h"

G_BEGIN_DECLS

#define STORE_ERROR (store_error_quark())
GQuark store_error_quark(void);

typedef enum {
    STORE_ERROR_FAILED,          /* an I/O or internal SQLite error */
    STORE_ERROR_NOT_FOUND,       /* the row does not exist (or was deleted) */
    STORE_ERROR_EXISTS,          /* a unique key is already taken */
    STORE_ERROR_CONFLICT,        /* a domain rule forbids the change now */
    STORE_ERROR_BUSY,            /* the database stayed locked past busy_timeout */
    STORE_ERROR_FULL,            /* the disk is full */
    STORE_ERROR_TEACHER_OFFLINE, /* a request to a teacher who is offline */
    STORE_ERROR_TEACHER_BUSY,    /* a request to a teacher who is busy */
    STORE_ERROR_BAD_STATE,       /* the transition is not legal from this state */
    STORE_ERROR_UNAVAILABLE,     /* the database server cannot be reached now */
    STORE_ERROR_FENCED,          /* this node's lease ran out: its writes are refused */
} StoreErrorCode;

/* The schema version this build migrates SQLite to; PRAGMA user_version. */
#define STORE_SCHEMA_VERSION 11
/* ... and PostgreSQL, whose schema started at the SQLite schema's sixth
 * version; table consultd_schema. */
#define STORE_PG_SCHEMA_VERSION 7

/* How a shared (PostgreSQL) store behaves; zeroes mean the defaults. */
typedef struct {
    int timeout_ms;        /* statement_timeout and the wait for any reply (1000); a
                            * tool (no on_event) waits 10 min */
    int connect_timeout_s; /* connect_timeout (3) */
    gboolean migrate;      /* apply pending migrations at open */
    const char *node_id;   /* this node (NULL: a tool, not a node: no lease) */
    const char *node_url;  /* how other nodes reach it */
    /* Called on the loop when the connection comes back after a loss, and
     * when another node appended events (LISTEN/NOTIFY). */
    void (*on_event)(gpointer data, gboolean reconnected);
    gpointer data;
} StoreOptions;

typedef struct Store Store;

/* Opens (creating if needed) DIR/consultd.db in WAL mode and applies every
 * pending migration.  Returns NULL and sets error on failure. */
Store *store_open(const char *data_dir, GError **error);
/* Opens the database at PATH, migrating it to at most TARGET_VERSION: for
 * tests that build an older schema.  TARGET_VERSION 0 means the newest. */
Store *store_open_path(const char *path, int target_version, GError **error);
void store_close(Store *s); /* NULL-safe; finalizes statements, closes. */
/* Opens by DATABASE: NULL, "" or "sqlite:" (DATA_DIR/consultd.db),
 * "sqlite:PATH", or a PostgreSQL URL (postgresql://...) or libpq
 * connection string ("host=... dbname=...").  OPTS: for PostgreSQL. */
Store *store_open_database(const char *database, const char *data_dir, const StoreOptions *opts,
                           GError **error);
/* "sqlite" or "postgresql". */
const char *store_kind_name(Store *s);
/* Whether other nodes share this store (PostgreSQL). */
gboolean store_shared(Store *s);
/* Whether a wait for the database sleeps the calling fiber (fiber.h)
 * rather than the thread: PostgreSQL in a server with a loop.  Callers on
 * the loop's own stack still work; they wait, bounded, as on SQLite. */
gboolean store_waits_in_fibers(Store *s);
/* From the loop's stack: runs every fiber that holds or waits for the
 * connection to its end (before shutting down). */
void store_settle(Store *s);
/* How long a statement waits for another process's lock before failing
 * with STORE_ERROR_BUSY (5 s from store_open).  The server sets it short:
 * its one thread must not stall on a lock held by a tool. */
void store_set_busy_timeout(Store *s, int ms);
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
    gboolean demo;          /* seeded by --demo */
    gint64 session_expires; /* store_session_user() only: when it ends, ms */
} StoreUser;

void store_user_free(StoreUser *u); /* NULL-safe */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(StoreUser, store_user_free)

/* Adds a user; PWHASH is an already hashed password string.  Returns the new
 * id, or 0 with STORE_ERROR_EXISTS when the username is taken. */
gint64 store_user_add(Store *s, const char *username, StoreRole role, const char *display_name,
                      const char *intro, const char *pwhash, GError **error);
/* Returns a new StoreUser (caller frees) or NULL with STORE_ERROR_NOT_FOUND.
 * Deleted users are not found.  PWHASH_OUT, if not NULL, receives a copy of
 * the stored password hash. */
StoreUser *store_user_get(Store *s, gint64 id, GError **error);
StoreUser *store_user_get_by_name(Store *s, const char *username, char **pwhash_out,
                                  GError **error);
/* All users that are not deleted, ordered by id: a GPtrArray of StoreUser
 * with store_user_free as its free function. */
GPtrArray *store_user_list(Store *s, GError **error);
/* Marks the user deleted and drops their sessions.  The row stays so that
 * history that names the user keeps its meaning; the username stays taken. */
gboolean store_user_delete(Store *s, gint64 id, GError **error);
/* Number of users that are not deleted. */
gint64 store_user_count(Store *s);

/* Sessions are stored by the SHA-256 of the token only (64 hex chars). */
gboolean store_session_add(Store *s, const char *token_hash, gint64 user_id, gint64 expires_at_ms,
                           GError **error);
/* Returns the session's user if the session exists, has not expired at
 * NOW_MS and the user is not deleted; else NULL with STORE_ERROR_NOT_FOUND. */
StoreUser *store_session_user(Store *s, const char *token_hash, gint64 now_ms, GError **error);
gboolean store_session_delete(Store *s, const char *token_hash, GError **error);
/* Sets user ID's password hash and, in the same transaction, ends every
 * session of theirs but KEEP_TOKEN_HASH (NULL: all).  A demo account
 * stops being one. */
gboolean store_user_set_password(Store *s, gint64 id, const char *pwhash,
                                 const char *keep_token_hash, GError **error);
/* Marks user ID a demo account (--demo seeded it). */
gboolean store_user_mark_demo(Store *s, gint64 id, GError **error);
/* Logout of USER: deletes the session TOKEN_HASH and, in the same
 * transaction, takes USER offline if they are an online teacher (with its
 * teacher.offline event; *WENT_OFFLINE says so).  A busy teacher stays
 * busy: the consultation goes on without the page. */
gboolean store_logout(Store *s, const char *token_hash, gint64 user, gboolean *went_offline,
                      GError **error);
/* Deletes expired sessions; returns how many. */
gint64 store_session_purge(Store *s, gint64 now_ms);

/* ---- teachers, favorites, consultations (store_domain.c) ----
 *
 * Every command below runs in one BEGIN IMMEDIATE transaction that checks
 * the rule, changes the state and appends the domain event(s), or does
 * nothing at all.  Passing a transaction in with store_begin() is allowed. */

typedef enum {
    STORE_PRESENCE_OFFLINE,
    STORE_PRESENCE_ONLINE,
    STORE_PRESENCE_BUSY,
} StorePresence;
const char *store_presence_name(StorePresence p);
/* Returns -1 for an unknown name. */
int store_presence_parse(const char *name);

typedef struct {
    gint64 id;
    char *username;
    char *display_name;
    char *intro;
    StorePresence status;
    gint64 popularity;         /* read model: eventually consistent */
    gint64 consultation_count; /* read model: eventually consistent */
    gboolean favorite;         /* of the viewing student */
} StoreTeacher;
void store_teacher_free(StoreTeacher *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(StoreTeacher, store_teacher_free)

/* VIEWER is the student whose favorites fill ->favorite (0: none); STATUS
 * filters by presence (-1: all). */
GPtrArray *store_teacher_list(Store *s, gint64 viewer, int status, GError **error);
StoreTeacher *store_teacher_get(Store *s, gint64 id, gint64 viewer, GError **error);
/* teacher.profile_updated */
gboolean store_teacher_set_intro(Store *s, gint64 id, const char *intro, GError **error);
/* online <-> offline (teacher.online / teacher.offline).  A busy teacher
 * gets STORE_ERROR_TEACHER_BUSY.  *CHANGED tells whether anything changed
 * (setting the current status again is a no-op without an event). */
gboolean store_teacher_set_presence(Store *s, gint64 id, StorePresence to, gboolean *changed,
                                    GError **error);
/* teacher.favorited / teacher.unfavorited; idempotent. */
gboolean store_favorite_set(Store *s, gint64 student, gint64 teacher, gboolean on,
                            gboolean *changed, GError **error);
/* Students who favor TEACHER now (user ids). */
GArray *store_favorers(Store *s, gint64 teacher);
/* Teacher ids STUDENT favors. */
GArray *store_favorites_of(Store *s, gint64 student);
/* Teacher ids currently online (not busy) whose console no node has seen
 * since UNSEEN_SINCE (ms; 0: all online teachers), for the presence
 * sweeper. */
GArray *store_teachers_online(Store *s, gint64 unseen_since);
/* Records that this node holds the consoles (events streams) of teachers
 * IDS now: on several nodes, a teacher is online while any node sees their
 * console. */
gboolean store_teachers_console_seen(Store *s, GArray *ids, gint64 now_ms, GError **error);

typedef enum {
    STORE_CONSULT_REQUESTED,
    STORE_CONSULT_LIVE,
    STORE_CONSULT_ENDED,
    STORE_CONSULT_DECLINED,
    STORE_CONSULT_CANCELED,
    STORE_CONSULT_EXPIRED,
    STORE_CONSULT_INTERRUPTED,
} StoreConsultStatus;
/* How many consultations USER takes part in that are requested, live or
 * interrupted; -1 and ERROR if the database could not be read. */
gint64 store_consultations_open_for(Store *s, gint64 user, GError **error);
const char *store_consult_status_name(StoreConsultStatus st);
int store_consult_status_parse(const char *name); /* -1 if unknown */

typedef struct {
    gint64 id;
    gint64 teacher_id, student_id;
    char *teacher_name, *student_name;
    StoreConsultStatus status;
    gint64 requested_at, accepted_at, ended_at; /* ms, 0 if not yet */
    char *end_reason;
    char *node_id;      /* where its media is placed (several nodes), or NULL */
    gint64 messages;    /* in its chat */
    gboolean from_line; /* offered to the first of the teacher's waiting line */
} StoreConsultation;
void store_consultation_free(StoreConsultation *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(StoreConsultation, store_consultation_free)

/* The synchronous check and the reservation: the teacher must be online;
 * they become busy and the consultation is requested (events
 * consultation.requested, teacher.busy).  Errors: NOT_FOUND (no such
 * teacher), TEACHER_OFFLINE, TEACHER_BUSY. */
StoreConsultation *store_consultation_request(Store *s, gint64 student, gint64 teacher,
                                              GError **error);
/* Moves consultation ID to TO if the state machine allows it (see the top
 * of store_domain.c), with REASON stored for terminal states.  Freeing the
 * teacher (teacher.available) happens in the same transaction.  Errors:
 * NOT_FOUND, BAD_STATE. */
gboolean store_consultation_transition(Store *s, gint64 id, StoreConsultStatus to,
                                       const char *reason, GError **error);
StoreConsultation *store_consultation_get(Store *s, gint64 id, GError **error);
/* TEACHER 0: all; STATUS -1: all; newest first, at most LIMIT. */
GPtrArray *store_consultation_list(Store *s, gint64 teacher, int status, guint limit,
                                   GError **error);
gint64 store_consultation_count(Store *s, StoreConsultStatus status);
/* Ids of requested consultations older than BEFORE_MS. */
GArray *store_consultations_requested_before(Store *s, gint64 before_ms);
/* Ids of live or interrupted consultations accepted before BEFORE_MS. */
GArray *store_consultations_live_since_before(Store *s, gint64 before_ms);

/* participant.joined / participant.left for consultation ID (ROLE a
 * participant: teacher or student; REASON a fixed word or NULL), or for a
 * shared screen (STREAM screen) screen.started / screen.stopped.  Not a
 * state change of the consultation: a fact the participants are told
 * about. */
gboolean store_participant_event(Store *s, gint64 id, ConsultdRole role, ConsultdStream stream,
                                 gboolean joined, const char *reason, GError **error);
/* Who shares a screen in consultation ID now, by its events: bit 1 << ROLE
 * set for each participant whose last screen event is screen.started. */
guint store_consultation_screens(Store *s, gint64 id);

/* ---- a teacher's waiting line (store_line.c) ---- */

/* A busy teacher's line: students wait in order for the teacher to be
 * free.  When the teacher's consultation closes, the first is offered a
 * consultation at once (requested, from_line), in the same transaction; a
 * declined or expired offer moves to the next.  Going offline closes and
 * empties it; going online opens it again.  Events: line.joined,
 * line.left (reason left | gone | offered | teacher_offline), line.offered,
 * line.opened, line.closed. */
typedef struct {
    gint64 student_id;
    char *display_name;
    gint64 joined_at;
} StoreLineEntry;
void store_line_entry_free(StoreLineEntry *e);
/* STUDENT joins TEACHER's line (at most MAX waiting); *POSITION gets its
 * place (1: next).  Already in it: its place, no change.  Errors:
 * NOT_FOUND (no such teacher), TEACHER_OFFLINE, BAD_STATE (the teacher is
 * online and free: ask directly), CONFLICT (the line is closed), FULL,
 * EXISTS (in another line, or in an open consultation). */
gboolean store_line_join(Store *s, gint64 teacher, gint64 student, gint64 max, gint64 *position,
                         GError **error);
/* STUDENT leaves TEACHER's line for REASON (a fixed word); FALSE with
 * NOT_FOUND if not in it. */
gboolean store_line_leave(Store *s, gint64 teacher, gint64 student, const char *reason,
                          GError **error);
/* TEACHER's line in order (StoreLineEntry), and whether it is open; NULL
 * and NOT_FOUND for no such teacher. */
GPtrArray *store_line_get(Store *s, gint64 teacher, gboolean *open, GError **error);
/* The students in TEACHER's line (gint64), in order. */
GArray *store_line_members(Store *s, gint64 teacher);
/* The teacher opens or closes the line (a closed line keeps whoever waits
 * and takes nobody new). */
gboolean store_line_set_open(Store *s, gint64 teacher, gboolean open, GError **error);
/* Presence of the waiting: STUDENTS (gint64) have an events stream on this
 * node now; then those not seen since BEFORE_MS leave (reason gone).  How
 * many left, or -1. */
gint64 store_line_sweep(Store *s, GArray *students, gint64 now_ms, gint64 before_ms,
                        GError **error);

/* ---- the chat of a consultation (store_messages.c) ---- */

typedef struct {
    gint64 id, consultation_id, author_id;
    ConsultdRole role; /* teacher or student */
    char *body;
    gint64 created_at; /* ms */
} StoreMessage;
void store_message_free(StoreMessage *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(StoreMessage, store_message_free)
#define STORE_MESSAGE_MAX 2000 /* characters */
/* Whether BODY may be a message: 1..STORE_MESSAGE_MAX characters of UTF-8,
 * not only white space. */
gboolean store_message_body_ok(const char *body);
/* Where time AT_MS falls on consultation C's timeline (ms from its start;
 * 0 before it started): the offset of its recordings and messages. */
gint64 store_consultation_offset(const StoreConsultation *c, gint64 at_ms);
/* AUTHOR (a participant of CONSULTATION) says BODY (1..STORE_MESSAGE_MAX
 * characters of UTF-8, not only white space) while it is requested, live or
 * interrupted; appends message.created with the message.  NOT_FOUND (no
 * such consultation, or AUTHOR is not in it), CONFLICT (it is closed),
 * EXISTS never; a bad BODY is CONFLICT too (the API checks it first). */
StoreMessage *store_message_add(Store *s, gint64 consultation, gint64 author, const char *body,
                                GError **error);
/* CONSULTATION's messages, oldest first. */
GPtrArray *store_messages_list(Store *s, gint64 consultation, GError **error);
/* How many messages CONSULTATION has. */
gint64 store_messages_count(Store *s, gint64 consultation);

/* ---- recordings (store_recordings.c) ---- */

typedef struct {
    gint64 id, consultation_id;
    ConsultdRole role; /* teacher, student or combined */
    char *file;
    ConsultdRecState state;
    char *reason;
    gint64 started_at, duration_ms, size, offset_ms, created_at;
    char *node_id;   /* the node whose disk holds it ('' on one node) */
    char *store;     /* where a ready one lives: '' its node's disk, else the store's URL */
    char *upload_id; /* uploading: the multipart upload in flight, or '' */
} StoreRecording;
void store_recording_free(StoreRecording *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(StoreRecording, store_recording_free)

/* Records a recording's new STATE (recording -> processing -> ready | failed
 * | empty), creating the row on first sight.  Becoming ready appends
 * recording.ready (with the file's offset from the consultation's start),
 * becoming failed recording.failed.  A terminal state is never left. */
gboolean store_recording_update(Store *s, gint64 consultation, ConsultdRole role, const char *file,
                                ConsultdRecState state, const char *reason, gint64 started_at,
                                gint64 duration_ms, gint64 size, GError **error);
GPtrArray *store_recordings_list(Store *s, gint64 consultation, GError **error);
/* The ready recording FILE of CONSULTATION, or NULL. */
StoreRecording *store_recording_get_ready(Store *s, gint64 consultation, const char *file);
/* The first free number of ROLE's recording series in CONSULTATION
 * (teacher.webm is 1, teacher-2.webm 2, ...) by the table, which every
 * node shares: a consultation that resumes on another node goes on with
 * the series instead of reusing a name. */
guint store_recordings_next_series(Store *s, gint64 consultation, ConsultdRole role,
                                   ConsultdStream stream);
/* An uploading recording reached the store WHERE (its URL): it becomes
 * ready there (recording.ready).  CONFLICT unless it was uploading. */
gboolean store_recording_stored(Store *s, gint64 consultation, const char *file, const char *where,
                                GError **error);
/* While FILE of CONSULTATION uploads: the multipart upload in flight
 * (UPLOAD_ID, "" for none) and why the last attempt failed (REASON, ""). */
gboolean store_recording_upload_note(Store *s, gint64 consultation, const char *file,
                                     const char *upload_id, const char *reason, GError **error);
/* Recordings waiting to be uploaded (all nodes'). */
GPtrArray *store_recordings_uploading(Store *s);
/* Recordings left in recording/processing (by a crash). */
GPtrArray *store_recordings_unfinished(Store *s);
/* How many of CONSULTATION's participant recordings are still open
 * (recording/processing) and how many are finished (uploading or ready). */
void store_recordings_progress(Store *s, gint64 consultation, gint64 *open, gint64 *ready);
/* Every recording, newest first (admin view); ready ones oldest first
 * (retention). */
GPtrArray *store_recordings_all(Store *s, guint limit, GError **error);
GPtrArray *store_recordings_ready_oldest(Store *s, GError **error);
/* Bytes held by ready recordings. */
gint64 store_recordings_bytes(Store *s);
/* Marks a ready recording deleted (the caller removed the file) and appends
 * recording.deleted with REASON (a fixed word). */
gboolean store_recording_deleted(Store *s, gint64 id, const char *reason, GError **error);
/* Unfinished recordings whose node is gone (its lease ran out) become
 * processing with reason node_lost: they wait for that node, which repairs
 * them when it starts again.  How many changed, or -1.  0 on SQLite. */
gint64 store_recordings_mark_lost(Store *s, GError **error);
/* An admin writes off recording ID, whose node is gone for good: failed,
 * reason node_lost (recording.failed).  CONFLICT if it is finished, or if
 * its node serves (it will finish it); NOT_FOUND. */
gboolean store_recording_write_off(Store *s, gint64 id, GError **error);

typedef struct {
    gint64 consultation_id;
    char *file;
    ConsultdRole role;
    gint64 duration_ms, size, offset_ms;
} StoreMyRecording;
void store_my_recording_free(StoreMyRecording *r);
/* Ready recordings of STUDENT's consultations (read model), by consultation. */
GPtrArray *store_mypage_recordings(Store *s, gint64 student, GError **error);

/* ---- event log, projections, webhook queue (store_events.c) ---- */

typedef struct {
    gint64 seq;
    char *type;
    gint64 teacher_id, student_id, consultation_id; /* 0 when not involved */
    char *payload;                                  /* JSON object text */
    gint64 created_at;
} StoreEvent;
void store_event_free(StoreEvent *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(StoreEvent, store_event_free)

/* Events with seq > AFTER and <= UPTO (0: no bound), oldest first. */
GPtrArray *store_events_range(Store *s, gint64 after, gint64 upto, guint limit, GError **error);
gint64 store_events_last_seq(Store *s);
/* Where the dispatcher stands ("projections", "notify"). */
gint64 store_cursor(Store *s, const char *name);

/* One dispatcher step, in one transaction: applies up to LIMIT events past
 * the projections cursor to the read models, queues a webhook delivery per
 * URL for events past the notify cursor, and moves both cursors.  Returns
 * the newly notified events (for the live streams), or NULL on error with
 * nothing changed. */
GPtrArray *store_dispatch(Store *s, guint limit, const char *const *webhook_urls, GError **error);
/* A node's own reading of the shared log, for its live streams: events
 * past AFTER that the read models already reflect (seq <= the projections
 * cursor, whichever node moved it), at most LIMIT, toggle pairs dropped
 * as store_dispatch() drops them.  *UPTO: the last seq looked at (the
 * next AFTER).  NULL and ERROR on failure. */
GPtrArray *store_events_follow(Store *s, gint64 after, guint limit, gint64 *upto, GError **error);
/* Drops every read model and replays the whole event log into it.  The
 * notify cursor and the webhook queue are left alone. */
gboolean store_rebuild_projections(Store *s, GError **error);
/* Retention: deletes up to BATCH events created before BEFORE_MS that no
 * read model is rebuilt from (not consultation.* or recording.*), already
 * applied and notified and with no webhook delivery pending, with their
 * finished deliveries, and finished deliveries of other events as old.
 * One transaction.  Returns how many rows went (0: nothing left), -1 and
 * ERROR on failure;
 * store_cursor(s, "pruned") is the highest seq deleted so far. */
gint64 store_events_prune(Store *s, gint64 before_ms, guint batch, GError **error);

typedef struct {
    gint64 consultation_id;
    gint64 teacher_id;
    char *teacher_name;
    StoreConsultStatus status;
    gint64 requested_at, started_at, ended_at;
    char *end_reason;
    gint64 messages; /* in its chat */
} StoreMyPageRow;
void store_mypage_row_free(StoreMyPageRow *r);
GPtrArray *store_mypage(Store *s, gint64 student, GError **error);

typedef struct {
    gint64 id;
    gint64 event_seq;
    char *url;
    char *state; /* pending | delivered | failed */
    gint64 attempts;
    gint64 next_attempt_at;
    char *last_error;
    gint64 delivered_at;
} StoreDelivery;
void store_delivery_free(StoreDelivery *d);
/* Claims up to LIMIT pending deliveries due at NOW_MS, oldest first: each
 * is not due again (for any node) for LEASE_MS, unless its attempt's
 * result comes first (store_delivery_result).  With several nodes each
 * delivery is claimed by one (FOR UPDATE SKIP LOCKED). */
GPtrArray *store_deliveries_claim(Store *s, gint64 now_ms, gint64 lease_ms, guint limit);
/* Newest first, for the admin API. */
GPtrArray *store_deliveries_list(Store *s, guint limit, GError **error);
/* Records an attempt's outcome: delivered, or retried at NEXT_AT_MS, or
 * failed for good when NEXT_AT_MS is 0. */
gboolean store_delivery_result(Store *s, gint64 id, gboolean delivered, const char *error_text,
                               gint64 next_at_ms, GError **err);
StoreEvent *store_event_get(Store *s, gint64 seq);

/* ---- nodes sharing one PostgreSQL store (store_pg.c) ----
 *
 * A node registers (StoreOptions.node_id) and renews a lease of 6 s; every
 * write transaction checks, under the writers' lock, that the node's epoch
 * still holds a live lease, and fails with STORE_ERROR_FENCED if not.  On
 * SQLite these do nothing and the list is empty. */

typedef struct {
    char *node_id, *url;
    gint64 epoch;
    gint64 lease_left_ms; /* negative: expired that long ago */
    gint64 started_at, renewed_at;
    gint64 streams, live; /* load it reported at its last renewal */
    gint64 max_live;      /* consultations' media it takes (0: none) */
    gboolean draining;
    gint64 placed; /* open consultations placed on it (its epoch) */
    gint64 cpu;    /* per mille of its machine, at its last renewal */
} StoreNode;
void store_node_free(StoreNode *n);

/* Registers this node with a new epoch (a fenced node comes back so). */
gboolean store_node_register(Store *s, GError **error);
/* Renews the lease, reporting the node's load (CPU: per mille of the
 * machine's cores, used by the node and its media workers since the last
 * renewal); a node whose lease ran out registers again (new epoch).  Call
 * every 2 s. */
gboolean store_node_renew(Store *s, gint64 streams, gint64 live, gint64 cpu, GError **error);
gint64 store_node_epoch(Store *s);
/* How other nodes reach this one (known once it listens). */
void store_node_set_url(Store *s, const char *url);
/* How many consultations' media this node takes (0: none); sent at
 * registration. */
void store_node_set_capacity(Store *s, gint64 max_live);
/* Where consultation ID's media lives: its node, if that node still holds
 * its lease with the epoch it was placed at (draining or not: a draining
 * node keeps what it has); else the
 * least-loaded serving node with room, recorded now: a node under
 * STORE_NODE_CPU_HOT only if none is, then the fewest consultations, then
 * the least CPU.  Sets *NODE_ID and
 * *URL (caller frees).  On SQLite (one node) both stay NULL: here.  FALSE
 * with STORE_ERROR_FULL if no node has room, STORE_ERROR_NOT_FOUND. */
#define STORE_NODE_CPU_HOT 900 /* per mille */
gboolean store_consultation_place(Store *s, gint64 id, char **node_id, char **url, GError **error);
/* Failover: open consultations placed on a node whose lease ran out (or
 * that registered again since) lose their placement; the live ones become
 * interrupted (reason node_lost), each with its event.  Every node may run
 * it: the second finds nothing.  How many were interrupted, or -1. */
gint64 store_consultations_orphans_interrupt(Store *s, GError **error);
/* Drain: NODE_ID takes no new placements (it learns it at its next
 * renewal); a node that starts afresh is not draining.  NOT_FOUND if no
 * such node (or on SQLite, which has no registry). */
gboolean store_node_set_draining(Store *s, const char *node_id, gboolean on, GError **error);
/* Whether this node was told to drain (as of its last renewal). */
gboolean store_node_draining(Store *s);
/* Open (live or interrupted) consultations whose media is here: placed on
 * this node's epoch; on SQLite, all of them. */
GArray *store_consultations_here(Store *s);
/* ID leaves this node: it loses its placement and, if live, becomes
 * interrupted for REASON; its next publish places it elsewhere. */
gboolean store_consultation_unplace(Store *s, gint64 id, const char *reason, GError **error);
GPtrArray *store_nodes_list(Store *s, GError **error);
/* Tests only: drops every table of the PostgreSQL database CONNINFO (its
 * schema public, recreated empty). */
gboolean store_drop_all(const char *conninfo, GError **error);
/* FALSE while the database server is unreachable (reconnecting). */
gboolean store_available(Store *s);

G_END_DECLS
