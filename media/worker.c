/* worker.c - consultd-media: a media worker process.
 *
 * Started by consultd with one end of a SOCK_SEQPACKET socketpair on the fd
 * given by --fd.  It owns the GStreamer pipelines (one MediaRoom per
 * consultation) and answers the main process's messages (proto.h).  It
 * holds no database and makes no decisions about who may do what: the main
 * process checked that before sending an offer.  When the main process goes
 * away (EOF on the socket) the worker exits; when the worker dies, the main
 * process notices and restarts it.
 */
#include <gst/gst.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <unistd.h>

#include "proto.h"
#include "recorder.h"
#include "room.h"
#include "counters.h"
#include "readers.h"
#include "trim.h"

typedef struct {
    GMainLoop *loop;
    MediaChan *chan;
    MediaWorkerConfig cfg;
    GHashTable *rooms;    /* gint64 *consultation -> MediaRoom * */
    GHashTable *sessions; /* char *session -> gint64 *consultation */
    gboolean disk_low;    /* recordings held (check_disk()) */
} MediaWorker;

static void
send_error(MediaWorker *w, guint32 req, const char *session, const char *code, const char *msg)
{
    media_chan_send(w->chan,
                    media_msg("error", "req", "u", req, "session", "s", session ? session : "",
                              "code", "s", code, "message", "s", msg, NULL));
}

static void
hook_answer(gpointer data, guint32 req, const char *session, const char *sdp)
{
    MediaWorker *w = data;
    media_chan_send(w->chan, media_msg("answer", "req", "u", req, "session", "s", session, "sdp",
                                       "s", sdp, NULL));
}

static void
hook_error(gpointer data, guint32 req, const char *session, const char *code, const char *message)
{
    send_error(data, req, session, code, message);
}

static void
hook_joined(gpointer data, gint64 consultation, ConsultdRole role, ConsultdStream stream,
            const char *session)
{
    MediaWorker *w = data;
    media_chan_send(w->chan,
                    media_msg("joined", "consultation", "x", consultation, "role", "s",
                              consultd_role_name(role), "stream", "s", consultd_stream_name(stream),
                              "session", "s", session, NULL));
}

static void
hook_left(gpointer data, gint64 consultation, ConsultdRole role, ConsultdStream stream,
          const char *session, const char *reason)
{
    MediaWorker *w = data;
    media_chan_send(w->chan,
                    media_msg("left", "consultation", "x", consultation, "role", "s",
                              consultd_role_name(role), "stream", "s", consultd_stream_name(stream),
                              "session", "s", session, "reason", "s", reason, NULL));
    g_hash_table_remove(w->sessions, session);
}

static void
hook_recording(gpointer data, gint64 consultation, ConsultdRole role, const char *file,
               ConsultdRecState state, const char *reason, gint64 started_at, gint64 duration_ms,
               gint64 size)
{
    MediaWorker *w = data;
    media_chan_send(w->chan, media_msg("recording", "consultation", "x", consultation, "role", "s",
                                       consultd_role_name(role), "file", "s", file, "state", "s",
                                       consultd_rec_state_name(state), "reason", "s",
                                       reason ? reason : "", "started_at", "x", started_at,
                                       "duration_ms", "x", duration_ms, "size", "x", size, NULL));
}

static MediaRoom *
room_for(MediaWorker *w, gint64 consultation, gboolean create)
{
    MediaRoom *room = g_hash_table_lookup(w->rooms, &consultation);
    if (!room && create) {
        MediaRoomHooks hooks = {hook_answer, hook_error, hook_joined, hook_left, hook_recording, w};
        room = media_room_new(consultation, &w->cfg, &hooks);
        if (w->disk_low)
            media_room_hold_recording(room, "disk_low");
        g_hash_table_insert(w->rooms, g_memdup2(&consultation, sizeof consultation), room);
    }
    return room;
}

static void
on_offer(MediaWorker *w, GVariant *m)
{
    guint32 req = 0;
    gint64 consultation = 0;
    const char *session = NULL, *role = NULL, *dir = NULL, *sdp = NULL;
    g_variant_lookup(m, "req", "u", &req);
    if (!g_variant_lookup(m, "consultation", "x", &consultation) ||
        !g_variant_lookup(m, "session", "&s", &session) ||
        !g_variant_lookup(m, "role", "&s", &role) || !g_variant_lookup(m, "dir", "&s", &dir) ||
        !g_variant_lookup(m, "sdp", "&s", &sdp)) {
        send_error(w, req, session, "bad_message", "offer: missing fields");
        return;
    }
    ConsultdRole r;
    if (!consultd_role_parse(role, FALSE, &r)) {
        send_error(w, req, session, "bad_message", "offer: unknown role");
        return;
    }
    /* Absent (an older signaling side): the camera. */
    const char *stream = "camera";
    g_variant_lookup(m, "stream", "&s", &stream);
    ConsultdStream st;
    if (!consultd_stream_parse(stream, &st)) {
        send_error(w, req, session, "bad_message", "offer: unknown stream");
        return;
    }
    guint32 rec_next = 0; /* absent from an older signaling side: 1 */
    g_variant_lookup(m, "rec_next", "u", &rec_next);
    MediaRoom *room = room_for(w, consultation, TRUE);
    if (!strcmp(dir, "publish")) /* a receive offer carries none: it must not reset it */
        media_room_set_rec_next(room, r, st, rec_next);
    g_autoptr(GError) err = NULL;
    if (!media_room_offer(room, req, session, r, st, !strcmp(dir, "publish"), sdp, &err)) {
        send_error(w, req, session, err->code == MEDIA_ERROR_NO_CODEC ? "no_codec" : "bad_offer",
                   err->message);
        if (media_room_session_count(room) == 0)
            g_hash_table_remove(w->rooms, &consultation);
        return;
    }
    g_hash_table_insert(w->sessions, g_strdup(session),
                        g_memdup2(&consultation, sizeof consultation));
}

static MediaRoom *
room_of_session(MediaWorker *w, const char *session)
{
    gint64 *c = g_hash_table_lookup(w->sessions, session);
    return c ? g_hash_table_lookup(w->rooms, c) : NULL;
}

static void
on_message(MediaChan *ch, GVariant *m, gpointer data)
{
    MediaWorker *w = data;
    const char *op = media_msg_op(m);
    const char *session = "";
    g_variant_lookup(m, "session", "&s", &session);
    if (!strcmp(op, "offer")) {
        on_offer(w, m);
    } else if (!strcmp(op, "trickle")) {
        guint32 mline = 0;
        const char *cand = NULL;
        MediaRoom *room = room_of_session(w, session);
        if (room && g_variant_lookup(m, "mline", "u", &mline) &&
            g_variant_lookup(m, "candidate", "&s", &cand))
            media_room_trickle(room, session, mline, cand);
    } else if (!strcmp(op, "close")) {
        MediaRoom *room = room_of_session(w, session);
        if (room)
            media_room_close_session(room, session);
        g_hash_table_remove(w->sessions, session);
    } else if (!strcmp(op, "end")) {
        gint64 c = 0;
        if (g_variant_lookup(m, "consultation", "x", &c)) {
            GHashTableIter it;
            gint64 *sc;
            g_hash_table_iter_init(&it, w->sessions);
            while (g_hash_table_iter_next(&it, NULL, (gpointer *)&sc))
                if (*sc == c)
                    g_hash_table_iter_remove(&it);
            g_hash_table_remove(w->rooms, &c);
        }
    } else {
        g_warning("media worker: unknown message '%s'", op);
    }
}

static void
on_closed(MediaChan *ch, gpointer data)
{
    MediaWorker *w = data;
    g_message("media worker: main process gone; exiting");
    g_main_loop_quit(w->loop);
}

/* Whether the recordings' file system has less than record-min-free-bytes
 * free: then every room holds its recordings (reason disk_low) until it has
 * enough again; the calls go on. */
static void
check_disk(MediaWorker *w)
{
    if (!w->cfg.recordings_dir || !w->cfg.record_min_free)
        return;
    struct statvfs vfs;
    if (statvfs(w->cfg.recordings_dir, &vfs) != 0)
        return;
    guint64 avail = (guint64)vfs.f_bavail * vfs.f_frsize;
    /* Hysteresis: it resumes only with a margin over the floor (a tenth,
     * at least 64 MiB), so that the space a finished file frees does not
     * start another at once. */
    guint64 margin = MAX(w->cfg.record_min_free / 10, (guint64)64 << 20);
    gboolean low =
        w->disk_low ? avail < w->cfg.record_min_free + margin : avail < w->cfg.record_min_free;
    if (low == w->disk_low)
        return;
    w->disk_low = low;
    if (low)
        g_warning("recordings: %" G_GUINT64_FORMAT " MiB free in %s, under record-min-free-bytes:"
                  " recording stops (disk_low), the calls go on",
                  avail >> 20, w->cfg.recordings_dir);
    else
        g_message("recordings: %" G_GUINT64_FORMAT " MiB free again: recording resumes",
                  avail >> 20);
    GHashTableIter it;
    MediaRoom *room;
    g_hash_table_iter_init(&it, w->rooms);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&room))
        media_room_hold_recording(room, low ? "disk_low" : NULL);
}

static gboolean
tick(gpointer data)
{
    MediaWorker *w = data;
    check_disk(w);
    GHashTableIter it;
    MediaRoom *room;
    g_autoptr(GPtrArray) empty = g_ptr_array_new_with_free_func(g_free);
    g_hash_table_iter_init(&it, w->rooms);
    guint sessions = 0;
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&room)) {
        media_room_tick(room);
        sessions += media_room_session_count(room);
    }
    media_chan_send(w->chan,
                    media_msg("stats", "rooms", "u", g_hash_table_size(w->rooms), "sessions", "u",
                              sessions, "packets_in", "t", media_counter(MEDIA_PACKETS_IN),
                              "packets_out", "t", media_counter(MEDIA_PACKETS_OUT), "packets_lost",
                              "t", media_packets_lost(w->rooms), "keyframe_requests", "t",
                              media_counter(MEDIA_KEYFRAME_REQUESTS), "nacks_received", "t",
                              media_counter(MEDIA_NACKS_RECEIVED), "retransmitted", "t",
                              media_counter(MEDIA_RETRANSMITTED), "nacks_sent", "t",
                              media_counter(MEDIA_NACKS_SENT), "recovered", "t",
                              media_counter(MEDIA_RECOVERED), NULL));
    return G_SOURCE_CONTINUE;
}

/* Limits this process's writes to DIR (recordings), its HOME (GStreamer's
 * registry cache) and device files, with Landlock where the kernel has it:
 * a GStreamer bug exploited from the network cannot write the database or
 * anything else.  Reads are not limited (plugins, certificates).  Says in
 * the log what it did. */
static void
limit_writes(const char *dir)
{
    const __u64 write = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                        LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                        LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                        LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
                        LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
    if (g_getenv("CONSULTD_NO_LANDLOCK")) {
        g_message("landlock: off (CONSULTD_NO_LANDLOCK)");
        return;
    }
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 1) {
        g_message("landlock: not available here (%s): this worker's writes are not limited",
                  g_strerror(errno));
        return;
    }
    struct landlock_ruleset_attr attr = {.handled_access_fs = write};
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (rs < 0) {
        g_message("landlock: cannot create a ruleset (%s)", g_strerror(errno));
        return;
    }
    const char *home = g_getenv("HOME");
    struct {
        const char *path;
        __u64 access;
    } allow[] = {{dir, write}, {home, write}, {"/dev", LANDLOCK_ACCESS_FS_WRITE_FILE}};
    for (guint i = 0; i < G_N_ELEMENTS(allow); i++) {
        if (!allow[i].path || !*allow[i].path)
            continue;
        int fd = open(allow[i].path, O_PATH | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct landlock_path_beneath_attr pb = {.allowed_access = allow[i].access, .parent_fd = fd};
        syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
        close(fd);
    }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (syscall(SYS_landlock_restrict_self, rs, 0) != 0)
        g_message("landlock: cannot restrict (%s)", g_strerror(errno));
    else
        g_message("landlock: writes limited to %s (ABI %ld)", dir ? dir : "(nothing)", abi);
    close(rs);
}

/* consultd-media --finalize FILE: the repair step the main process runs for
 * recordings a crash left unfinished.  Reports one framed "finalized"
 * message on stdout (media/proto.h). */
static int
finalize_one(const char *path)
{
    g_autofree char *out = g_strconcat(path, ".final", NULL);
    gint64 duration = 0, size = 0, lead = 0;
    g_autoptr(GError) err = NULL;
    ConsultdRecState state = rec_finalize_file(path, out, &duration, &size, &lead, &err);
    if (state == CONSULTD_REC_READY && rename(out, path) != 0)
        state = CONSULTD_REC_FAILED;
    if (state != CONSULTD_REC_READY)
        unlink(out);
    media_frame_write(STDOUT_FILENO,
                      media_msg("finalized", "state", "s", consultd_rec_state_name(state),
                                "duration_ms", "x", duration, "size", "x", size, "lead_ms", "x",
                                lead, "reason", "s", err ? err->message : "", NULL));
    return 0;
}

static void
report_progress(int percent, gpointer data)
{
    media_frame_write(STDOUT_FILENO, media_msg("progress", "percent", "i", percent, NULL));
}

/* consultd-media --compose OUT --input A@0 --input B@1200 --screen C@5000:
 * the background combined file.  Framed messages on stdout (media/proto.h):
 * "progress" as it goes, then one "composed". */
static int
compose_one(const char *out, char **inputs, char **screen_inputs)
{
    guint n_cams = inputs ? g_strv_length(inputs) : 0;
    guint n = n_cams + (screen_inputs ? g_strv_length(screen_inputs) : 0);
    g_autofree const char **files = g_new0(const char *, n + 1);
    g_autofree gint64 *offsets = g_new0(gint64, n + 1);
    g_autofree gboolean *screens = g_new0(gboolean, n + 1);
    for (guint i = 0; i < n; i++) {
        char *in = i < n_cams ? inputs[i] : screen_inputs[i - n_cams];
        char *at = strrchr(in, '@');
        if (at) {
            *at = '\0';
            offsets[i] = g_ascii_strtoll(at + 1, NULL, 10);
        }
        files[i] = in;
        screens[i] = i >= n_cams;
    }
    g_autofree char *tmp = g_strconcat(out, ".part", NULL);
    gint64 duration = 0, size = 0;
    g_autoptr(GError) err = NULL;
    gboolean ok = n > 0 && rec_compose(files, offsets, screens, n, tmp, report_progress, NULL,
                                       &duration, &size, &err);
    if (ok && rename(tmp, out) != 0)
        ok = FALSE;
    if (!ok)
        unlink(tmp);
    ConsultdRecState state = ok ? CONSULTD_REC_READY : CONSULTD_REC_FAILED;
    media_frame_write(STDOUT_FILENO,
                      media_msg("composed", "state", "s", consultd_rec_state_name(state),
                                "duration_ms", "x", ok ? duration : 0, "size", "x", ok ? size : 0,
                                "reason", "s",
                                ok    ? ""
                                : err ? err->message
                                      : "no inputs",
                                NULL));
    return 0;
}

/* Pays once, before the first caller would: loading the WebRTC plugins and
 * generating the process's DTLS certificate (dtlsdec makes it on first
 * use and every webrtcbin shares it) took 110-240 ms of the first
 * session's answer.  Runs once, from an idle callback after "ready". */
static gboolean
warm_up(gpointer data)
{
    gint64 t0 = g_get_monotonic_time();
    GstElement *w = gst_element_factory_make("webrtcbin", NULL);
    GstElement *d = gst_element_factory_make("dtlsdec", NULL);
    char *pem = NULL;
    if (d)
        g_object_get(d, "pem", &pem, NULL);
    g_free(pem);
    if (d)
        gst_object_unref(gst_object_ref_sink(d));
    if (w)
        gst_object_unref(gst_object_ref_sink(w));
    g_info("media worker warmed up in %" G_GINT64_FORMAT " ms",
           (g_get_monotonic_time() - t0) / 1000);
    return G_SOURCE_REMOVE;
}

static void
room_free_cb(gpointer p)
{
    media_room_free(p);
}

int
main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    gst_init(&argc, &argv);
    int fd = -1;
    /* No defaults of its own: consultd's config table has them, and passes
     * every setting (signaling/workers/media.c, worker_start()). */
    gint min_port = 0, max_port = 0, timeout = -1, max_kbps = -1;
    gint64 min_free = 0;
    gboolean loopback = FALSE;
    g_autofree char *addresses = NULL, *public_ip = NULL, *stun = NULL;
    g_autofree char *recordings = NULL, *finalize = NULL, *compose = NULL;
    g_auto(GStrv) inputs = NULL, screen_inputs = NULL;
    GOptionEntry entries[] = {
        {"fd", 0, 0, G_OPTION_ARG_INT, &fd, "socket to the main process", "FD"},
        {"ice-loopback", 0, 0, G_OPTION_ARG_NONE, &loopback, "offer 127.0.0.1", NULL},
        {"ice-addresses", 0, 0, G_OPTION_ARG_STRING, &addresses, "comma-separated", "A"},
        {"min-port", 0, 0, G_OPTION_ARG_INT, &min_port, "lowest UDP port", "P"},
        {"max-port", 0, 0, G_OPTION_ARG_INT, &max_port, "highest UDP port", "P"},
        {"public-ip", 0, 0, G_OPTION_ARG_STRING, &public_ip, "advertised address", "IP"},
        {"stun", 0, 0, G_OPTION_ARG_STRING, &stun, "stun://host:port", "URL"},
        {"media-timeout", 0, 0, G_OPTION_ARG_INT, &timeout, "seconds without RTP", "S"},
        {"max-bitrate", 0, 0, G_OPTION_ARG_INT, &max_kbps, "a publisher's video at most", "KBIT/S"},
        {"recordings-dir", 0, 0, G_OPTION_ARG_FILENAME, &recordings, "where to record", "DIR"},
        {"record-min-free-bytes", 0, 0, G_OPTION_ARG_INT64, &min_free,
         "hold recordings while the disk has less free", "BYTES"},
        {"finalize", 0, 0, G_OPTION_ARG_FILENAME, &finalize,
         "repair and finalize one recording, print the outcome, exit", "FILE"},
        {"compose", 0, 0, G_OPTION_ARG_FILENAME, &compose,
         "compose --input files side by side into FILE, print progress, exit", "FILE"},
        {"screen", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &screen_inputs,
         "with --compose: a shared screen's FILE@OFFSET_MS (shown large)", "FILE@MS"},
        {"input", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &inputs, "with --compose: FILE@OFFSET_MS",
         "F@MS"},
        G_OPTION_ENTRY_NULL};
    g_autoptr(GOptionContext) ctx = g_option_context_new("- consultd media worker");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_autoptr(GError) err = NULL;
    gboolean parsed = g_option_context_parse(ctx, &argc, &argv, &err);
    if (parsed && finalize) {
        g_autofree char *dir = g_path_get_dirname(finalize);
        limit_writes(dir);
        return finalize_one(finalize);
    }
    if (parsed && compose) {
        g_autofree char *dir = g_path_get_dirname(compose);
        limit_writes(dir);
        return compose_one(compose, inputs, screen_inputs);
    }
    if (!parsed || fd < 0 || timeout < 0 || max_kbps < 0) {
        fprintf(stderr, "consultd-media: %s\n",
                err ? err->message : "--fd, --media-timeout and --max-bitrate are required");
        return 2;
    }
    MediaWorker w = {0};
    w.cfg.loopback = loopback;
    w.cfg.min_port = (guint)MAX(0, min_port);
    w.cfg.max_port = (guint)MAX(0, max_port);
    w.cfg.public_ip = public_ip;
    w.cfg.stun = stun;
    w.cfg.media_timeout_s = (guint)MAX(1, timeout);
    w.cfg.max_kbps = (guint)CLAMP(max_kbps, 100, 100000);
    w.cfg.recordings_dir = recordings;
    w.cfg.recorder = rec_recorder_new();
    w.cfg.record_min_free = (guint64)MAX(min_free, 0);
    limit_writes(recordings);
    g_auto(GStrv) addr = addresses && *addresses ? g_strsplit(addresses, ",", -1) : NULL;
    w.cfg.addresses = addr;
    w.loop = g_main_loop_new(NULL, FALSE);
    w.rooms = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, room_free_cb);
    w.sessions = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    w.chan = media_chan_new(fd, on_message, on_closed, &w);
    guint t = g_timeout_add_seconds(1, tick, &w);
    media_readers_start();
    media_chan_send(w.chan, media_msg("ready", "pid", "x", (gint64)getpid(), NULL));
    /* Ready first: an offer that comes during the warm-up waits for it
     * instead of being refused for want of a ready worker. */
    g_idle_add(warm_up, NULL);
    g_main_loop_run(w.loop);
    g_source_remove(t);
    g_hash_table_destroy(w.sessions);
    g_hash_table_destroy(w.rooms);
    rec_recorder_free(g_steal_pointer(&w.cfg.recorder));
    media_chan_free(w.chan);
    g_main_loop_unref(w.loop);
    gst_deinit();
    return 0;
}
