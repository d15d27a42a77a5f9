/* recorder.c - see recorder.h.
 *
 * Timestamps: packets arrive stamped with the room pipeline's running time
 * (their arrival).  The first video keyframe fixes the recording's base;
 * both tracks are journaled relative to it, so the file starts at 0 with a
 * keyframe and audio and video stay in step.  Packets from before the base
 * are dropped.  (A publisher without video is therefore not recorded: see
 * docs/recording.md.)  Finalizing orders each track by sequence number,
 * retimes it from its RTP timestamps (prime(), follow_drift()) and puts the
 * first video frame at 0 (drain()).
 *
 * Threads: the probes run on the room's streaming threads and touch only
 * the journal (journal.h) and atomics.  Everything else (closing, the
 * hand-off to finalizing, DONE) happens on the main loop; finalizing runs
 * on a GTask thread so a long file never stalls the worker's control plane.
 */
#include "recorder.h"

#include "journal.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/app/gstappsrc.h>
#include <gst/pbutils/pbutils.h>
#include <gst/rtp/gstrtpbuffer.h>
#include <gst/video/video.h>
#include <string.h>

enum {
    KIND_VIDEO,
    KIND_AUDIO,
    N_KINDS
};

/* What the probes share with the recording; outlives it while a probe
 * callback may still run (probes hold a reference). */
typedef struct {
    Journal *j;
    gint64 base;       /* first PTS (ns), -1 until set; atomic */
    gint64 started_at; /* wall ms of the first buffer; atomic */
} Live;

typedef struct {
    Live *live;
    int kind;
} Probe;

struct RecRecording {
    Recorder *rc;
    char *path;
    Live *live;
    GstPad *tee_sink[N_KINDS];
    gulong probe[N_KINDS];
    guint close_timer;
    RecDone done;
    gpointer done_data;
    gboolean stopping;
};

const char *
rec_path(RecRecording *rec)
{
    return rec->path;
}

gint64
rec_started_at(RecRecording *rec)
{
    return __atomic_load_n(&rec->live->started_at, __ATOMIC_ACQUIRE);
}

/* TRUE if RTP packet BUF starts a VP8 keyframe (RFC 7741: S=1, PID=0 and
 * the P bit of the VP8 payload header clear). */
static gboolean
vp8_keyframe_start(GstBuffer *buf)
{
    GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
    if (!gst_rtp_buffer_map(buf, GST_MAP_READ, &rtp))
        return FALSE;
    const guint8 *p = gst_rtp_buffer_get_payload(&rtp);
    guint n = gst_rtp_buffer_get_payload_len(&rtp);
    gboolean key = FALSE;
    if (n >= 1 && (p[0] & 0x10) && (p[0] & 0x07) == 0) {
        guint off = 1;
        if (p[0] & 0x80) { /* X: extension byte */
            guint8 x = n > 1 ? p[1] : 0;
            off = 2;
            if (x & 0x80) /* I: picture id, 7 or 15 bits */
                off += n > off && (p[off] & 0x80) ? 2 : 1;
            if (x & 0x40) /* L: TL0PICIDX */
                off++;
            if (x & 0x30) /* T or K */
                off++;
        }
        key = n > off && (p[off] & 0x01) == 0;
    }
    gst_rtp_buffer_unmap(&rtp);
    return key;
}

static void
journal_caps(Live *live, int kind, GstCaps *caps)
{
    g_autofree char *s = gst_caps_to_string(caps);
    jrn_append(live->j, JRN_CAPS, (guint8)kind, 0, (const guint8 *)s, strlen(s));
}

/* Streaming thread: one packet of KIND. */
static void
record_one(Live *live, int kind, GstBuffer *in)
{
    /* Arrival: without a jitterbuffer (media/rtppass.h) it may be only in
     * the DTS rtpsession stamps. */
    GstClockTime pts = GST_BUFFER_PTS(in);
    if (!GST_CLOCK_TIME_IS_VALID(pts))
        pts = GST_BUFFER_DTS(in);
    if (!GST_CLOCK_TIME_IS_VALID(pts))
        return;
    /* The journal starts at the first video keyframe: nothing before it
     * could be shown (finalizing drops sound before the picture too). */
    gint64 expect = -1;
    if (kind == KIND_VIDEO && __atomic_load_n(&live->base, __ATOMIC_ACQUIRE) < 0 &&
        vp8_keyframe_start(in) &&
        __atomic_compare_exchange_n(&live->base, &expect, (gint64)pts, FALSE, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        __atomic_store_n(&live->started_at, g_get_real_time() / 1000, __ATOMIC_RELEASE);
    gint64 base = __atomic_load_n(&live->base, __ATOMIC_ACQUIRE);
    if (base < 0 || (gint64)pts < base)
        return;
    GstMapInfo mi;
    if (!gst_buffer_map(in, &mi, GST_MAP_READ))
        return;
    /* Dropped (disk behind or failed) is the isolation: see recorder.h. */
    jrn_append(live->j, JRN_RTP, (guint8)kind, (gint64)pts - base, mi.data, mi.size);
    gst_buffer_unmap(in, &mi);
}

static gboolean
record_in_list(GstBuffer **buf, guint idx, gpointer data)
{
    Probe *p = data;
    record_one(p->live, p->kind, *buf);
    return TRUE;
}

/* Streaming thread: a probe on a tee's sink pad.  Never changes what the
 * tee gets. */
static GstPadProbeReturn
on_probe(GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
    Probe *p = data;
    if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
        record_one(p->live, p->kind, GST_PAD_PROBE_INFO_BUFFER(info));
    } else if (info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST) {
        gst_buffer_list_foreach(GST_PAD_PROBE_INFO_BUFFER_LIST(info), record_in_list, p);
    } else if (info->type & GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM) {
        GstEvent *ev = GST_PAD_PROBE_INFO_EVENT(info);
        if (GST_EVENT_TYPE(ev) == GST_EVENT_CAPS) {
            GstCaps *caps;
            gst_event_parse_caps(ev, &caps);
            journal_caps(p->live, p->kind, caps);
        }
    }
    return GST_PAD_PROBE_OK;
}

static void
live_clear(gpointer data)
{
    jrn_unref(((Live *)data)->j);
}

static void
live_unref(Live *live)
{
    g_atomic_rc_box_release_full(live, live_clear);
}

static void
probe_free(gpointer data)
{
    Probe *p = data;
    live_unref(p->live);
    g_free(p);
}

static void
detach(RecRecording *rec)
{
    for (int k = 0; k < N_KINDS; k++) {
        if (rec->probe[k])
            gst_pad_remove_probe(rec->tee_sink[k], rec->probe[k]);
        rec->probe[k] = 0;
        g_clear_object(&rec->tee_sink[k]);
    }
}

void
rec_request_keyframe(RecRecording *rec)
{
    /* Pushed upstream from the tee's sink pad: webrtcbin makes it a PLI. */
    GstPad *pad = rec->tee_sink[KIND_VIDEO];
    if (pad)
        gst_pad_push_event(
            pad, gst_video_event_new_upstream_force_key_unit(GST_CLOCK_TIME_NONE, TRUE, 0));
}

/* A process's recording state (main loop only). */
struct Recorder {
    JrnWriter *writer;
    GList *recordings; /* not yet finished: what rec_recorder_free() stops */
    guint finishing;   /* finalizations under way, which it waits for */
};

Recorder *
rec_recorder_new(void)
{
    Recorder *rc = g_new0(Recorder, 1);
    rc->writer = jrn_writer_new();
    return rc;
}

static void
rec_release(RecRecording *rec)
{
    rec->rc->recordings = g_list_remove(rec->rc->recordings, rec);
    detach(rec);
    live_unref(rec->live);
    g_free(rec->path);
    g_free(rec);
}

void
rec_recorder_free(Recorder *rc)
{
    if (!rc)
        return;
    while (rc->recordings) {
        RecRecording *rec = rc->recordings->data;
        g_clear_handle_id(&rec->close_timer, g_source_remove);
        detach(rec); /* no probe may append while the journal is aborted */
        jrn_abort(rec->live->j, 1000);
        g_message("recording %s: left for repair (the process is exiting)", rec->path);
        rec_release(rec);
    }
    /* A finalization thread still running its pipeline would make
     * gst_deinit() wait forever; give it a few seconds to end (a file it
     * does not finish is repaired at the next start). */
    gint64 until = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
    while (rc->finishing && g_get_monotonic_time() < until)
        if (!g_main_context_iteration(NULL, FALSE))
            g_usleep(10 * 1000);
    jrn_writer_unref(rc->writer);
    if (rc->finishing) {
        /* Their threads still point at RC: it stays, the process exits. */
        g_warning("%u recordings still finalizing at exit; left for repair", rc->finishing);
        return;
    }
    g_free(rc);
}

RecRecording *
rec_start(Recorder *rc, GstElement *tee_video, GstElement *tee_audio, const char *path,
          GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    if (g_mkdir_with_parents(dir, 0750) != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot create %s", dir);
        return NULL;
    }
    Journal *j = jrn_open(rc->writer, path, error);
    if (!j)
        return NULL;
    RecRecording *rec = g_new0(RecRecording, 1);
    rec->rc = rc;
    rc->recordings = g_list_prepend(rc->recordings, rec);
    rec->path = g_strdup(path);
    rec->live = g_atomic_rc_box_new0(Live);
    rec->live->j = j;
    rec->live->base = -1;
    GstElement *tees[N_KINDS] = {tee_video, tee_audio};
    for (int k = 0; k < N_KINDS; k++) {
        rec->tee_sink[k] = gst_element_get_static_pad(tees[k], "sink");
        /* Caps already there (a publisher that joined first) go first. */
        g_autoptr(GstCaps) caps = gst_pad_get_current_caps(rec->tee_sink[k]);
        if (caps)
            journal_caps(rec->live, k, caps);
        Probe *p = g_new0(Probe, 1);
        p->live = g_atomic_rc_box_acquire(rec->live);
        p->kind = k;
        rec->probe[k] =
            gst_pad_add_probe(rec->tee_sink[k],
                              GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST |
                                  GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM,
                              on_probe, p, probe_free);
    }
    rec_request_keyframe(rec);
    return rec;
}

/* ------------------------------------------------------------- stopping */

typedef struct {
    Recorder *rc;
    char *in, *out;
    RecDone done;
    gpointer data;
    ConsultdRecState state;
    char *reason;
    gint64 duration_ms, size, lead_ms;
} Finish;

static void
finish_thread(GTask *task, gpointer src, gpointer data, GCancellable *c)
{
    Finish *f = data;
    g_autoptr(GError) err = NULL;
    f->state = rec_finalize_file(f->in, f->out, &f->duration_ms, &f->size, &f->lead_ms, &err);
    if (err)
        f->reason = g_strdup(err->message);
    g_task_return_boolean(task, TRUE);
}

static void
finish_done(GObject *src, GAsyncResult *res, gpointer data)
{
    Finish *f = data;
    if (f->state == CONSULTD_REC_READY) {
        /* The finalized file replaces the journal under the final name. */
        if (g_rename(f->out, f->in) != 0) {
            f->state = CONSULTD_REC_FAILED;
            g_free(f->reason);
            f->reason = g_strdup("cannot rename the finalized file");
        }
    } else {
        g_unlink(f->out);
        if (f->state == CONSULTD_REC_EMPTY)
            g_unlink(f->in);
    }
    f->done(f->data, f->in, f->state, f->reason, f->duration_ms, f->size, f->lead_ms);
    if (res)
        f->rc->finishing--;
    g_free(f->in);
    g_free(f->out);
    g_free(f->reason);
    g_free(f);
}

static void
rec_finish(RecRecording *rec)
{
    g_clear_handle_id(&rec->close_timer, g_source_remove);
    gboolean got_media = rec_started_at(rec) != 0;
    Finish *f = g_new0(Finish, 1);
    f->in = g_strdup(rec->path);
    f->out = g_strconcat(rec->path, ".final", NULL);
    f->done = rec->done;
    f->data = rec->done_data;
    f->rc = rec->rc;
    rec_release(rec);
    if (!got_media) {
        f->state = CONSULTD_REC_EMPTY;
        finish_done(NULL, NULL, f);
        return;
    }
    f->rc->finishing++;
    GTask *task = g_task_new(NULL, NULL, finish_done, f);
    g_task_set_task_data(task, f, NULL);
    g_task_run_in_thread(task, finish_thread);
    g_object_unref(task);
}

/* Main loop: the journal is written out and closed. */
static void
on_closed(gpointer data, const char *error)
{
    RecRecording *rec = data;
    if (error)
        g_message("recording %s: finalizing what was written before: %s", rec->path, error);
    guint64 dropped = jrn_dropped(rec->live->j);
    if (dropped)
        g_warning("recording %s: %" G_GUINT64_FORMAT " packets dropped while the disk was behind",
                  rec->path, dropped);
    rec_finish(rec);
}

static gboolean
close_timeout(gpointer data)
{
    RecRecording *rec = data;
    rec->close_timer = 0;
    g_warning("recording %s: not written out in time; finalizing what is on disk", rec->path);
    jrn_abort(rec->live->j, 0);
    rec_finish(rec);
    return G_SOURCE_REMOVE;
}

void
rec_stop(RecRecording *rec, guint timeout_ms, RecDone done, gpointer data)
{
    g_return_if_fail(!rec->stopping);
    rec->stopping = TRUE;
    rec->done = done;
    rec->done_data = data;
    detach(rec);
    jrn_close(rec->live->j, on_closed, rec);
    rec->close_timer = g_timeout_add(timeout_ms, close_timeout, rec);
}

/* ----------------------------------------------------------- finalizing */

static void
on_demux_pad(GstElement *demux, GstPad *pad, gpointer data)
{
    GstElement *mux = data;
    GstElement *pipe = GST_ELEMENT(gst_element_get_parent(demux));
    g_autoptr(GstCaps) caps = gst_pad_get_current_caps(pad);
    const char *name = caps ? gst_structure_get_name(gst_caps_get_structure(caps, 0)) : "";
    const char *templ = g_str_has_prefix(name, "video/")   ? "video_%u"
                        : g_str_has_prefix(name, "audio/") ? "audio_%u"
                                                           : NULL;
    if (templ) {
        /* Unbounded: the muxer waits for data on every pad, and a stream
         * that starts later than the other (video waits for a keyframe)
         * would otherwise fill a bounded queue and deadlock the remux. */
        GstElement *q = gst_element_factory_make("queue", NULL);
        g_object_set(q, "max-size-buffers", 0, "max-size-bytes", 0, "max-size-time", (guint64)0,
                     NULL);
        gst_bin_add(GST_BIN(pipe), q);
        gst_element_sync_state_with_parent(q);
        GstPad *qs = gst_element_get_static_pad(q, "sink");
        gst_pad_link(pad, qs);
        gst_object_unref(qs);
        GstPad *mp = gst_element_request_pad_simple(mux, templ);
        GstPad *qo = gst_element_get_static_pad(q, "src");
        gst_pad_link(qo, mp);
        gst_object_unref(qo);
        gst_object_unref(mp);
    }
    gst_object_unref(pipe);
}

/* ------------------------------------------------- journal -> WebM */

#define REORDER_WINDOW 32 /* packets held per track to put them in order */
#define PRIME_PACKETS 256 /* packets looked at to anchor a track's timing */
#define PRIME_SPAN (2 * GST_SECOND)
#define MIN_STEP GST_MSECOND /* between frames: never equal, never back */
#define DRIFT_WINDOW GST_SECOND
#define DRIFT_SLEW 4 /* drift moves by at most a quarter of the media time */
#define THROTTLE_BYTES (4 * 1024 * 1024)

typedef struct {
    int kind;
    char *caps; /* first caps record, NULL if none */
    guint64 packets;
    guint64 last_record; /* index of its last packet record */
    GstElement *src;     /* NULL: not in the file */
    gint rate;
    /* ordering */
    GQueue held; /* Held, ascending extended sequence numbers */
    guint64 top_seq, out_seq;
    gboolean any, any_out;
    /* timing */
    guint64 ext_ts;     /* gst_rtp_buffer_ext_timestamp() state */
    gboolean primed;    /* anchor chosen */
    guint64 primed_seq; /* the last packet the anchor was chosen from */
    guint64 anchor_ts;
    gint64 anchor_pts;
    guint64 last_ext;
    gint64 last_pts;
    gint64 drift, drift_target, drift_media; /* follow_drift() */
    gint64 win_min, win_media;
    guint win_n;
    gint64 shift; /* the same for every track: drain() */
    gboolean ending, eos;
} Track;

typedef struct {
    guint64 seq, ts; /* extended */
    gint64 arrival;
    GstBuffer *buf;
} Held;

static gint64
media_time(Track *t, guint64 ts)
{
    return ts >= t->anchor_ts
               ? (gint64)gst_util_uint64_scale_int(ts - t->anchor_ts, GST_SECOND, t->rate)
               : -(gint64)gst_util_uint64_scale_int(t->anchor_ts - ts, GST_SECOND, t->rate);
}

/* Timing: a track's packets keep the spacing of their RTP timestamps (so
 * a burst of packets a sender held back does not pile up on one instant),
 * placed on the recording's timeline by the least delay seen over its
 * first PRIME_SPAN: the packets that came fastest fix where the others
 * belong.  A later packet more than a second away from its arrival (a
 * sender that restarted its clock) anchors the track again. */
static void
prime(Track *t)
{
    Held *first = g_queue_peek_head(&t->held);
    if (!first)
        return;
    Held *last = g_queue_peek_tail(&t->held);
    t->anchor_ts = first->ts;
    t->anchor_pts = G_MAXINT64;
    for (GList *l = t->held.head; l; l = l->next) {
        Held *h = l->data;
        t->anchor_pts = MIN(t->anchor_pts, h->arrival - media_time(t, h->ts));
    }
    /* Drift is followed from the packets after these on (release_one()). */
    t->primed_seq = last->seq;
    t->drift_media = t->win_media = media_time(t, last->ts);
    t->primed = TRUE;
}

/* A sender whose packets come later and later (its clock slower than
 * ours, or a sender falling behind on a loaded machine) would make a file
 * shorter than the call; one whose packets come sooner, longer.  The least
 * lag over each DRIFT_WINDOW of media time says where the track should
 * sit; T->drift moves toward it by at most DRIFT_SLEW of the media time
 * that passed, so frames neither bunch nor jump while the timeline keeps
 * to the wall clock, as a jitterbuffer in slave mode would.  LAG: arrival
 * minus the anchored media time. */
static void
follow_drift(Track *t, gint64 media, gint64 lag)
{
    t->win_min = t->win_n++ ? MIN(t->win_min, lag) : lag;
    if (media - t->win_media >= DRIFT_WINDOW) {
        t->drift_target = t->win_min;
        t->win_media = media;
        t->win_n = 0;
    }
    gint64 dt = media - t->drift_media;
    if (dt <= 0)
        return;
    t->drift_media = media;
    gint64 step = dt / DRIFT_SLEW;
    t->drift += CLAMP(t->drift_target - t->drift, -step, step);
}

/* Pushes the lowest held packet of T, retimed. */
static void
release_one(Track *t)
{
    Held *h = g_queue_pop_head(&t->held);
    gint64 media = media_time(t, h->ts);
    /* The packets the anchor was chosen from are where it says, however
     * late they came (a start burst can be longer than a second): their
     * lateness is neither drift nor a restarted clock. */
    gboolean after_prime = h->seq > t->primed_seq;
    if (after_prime)
        follow_drift(t, media, h->arrival - (t->anchor_pts + media));
    gint64 pts = t->anchor_pts + media + t->drift;
    if (after_prime && ABS(pts - h->arrival) > (gint64)GST_SECOND) {
        t->anchor_ts = h->ts;
        t->anchor_pts = pts = h->arrival;
        t->drift = t->drift_target = t->win_media = 0;
        t->win_n = 0;
    }
    pts += t->shift;
    if (pts < 0 && t->kind != KIND_VIDEO) { /* before the first picture: drain() */
        t->out_seq = h->seq;
        gst_buffer_unref(h->buf);
        g_free(h);
        return;
    }
    /* Packets of a frame share its time; frames never go back in time or
     * land on the one before (videorate, in composing, asserts on that). */
    if (t->any_out) {
        if (h->ts <= t->last_ext)
            pts = t->last_pts;
        else
            pts = MAX(pts, t->last_pts + (gint64)MIN_STEP);
    }
    pts = MAX(pts, 0);
    t->last_ext = MAX(t->last_ext, h->ts);
    t->last_pts = pts;
    GST_BUFFER_PTS(h->buf) = (GstClockTime)pts;
    t->out_seq = h->seq;
    t->any_out = TRUE;
    gst_app_src_push_buffer(GST_APP_SRC(t->src), h->buf);
    g_free(h);
}

static gint
held_cmp(gconstpointer a, gconstpointer b, gpointer unused)
{
    guint64 x = ((const Held *)a)->seq, y = ((const Held *)b)->seq;
    return x < y ? -1 : x > y;
}

/* One packet in arrival order; late duplicates and packets behind what was
 * already pushed are dropped. */
static void
take_packet(Track *t, gint64 arrival, const guint8 *data, gsize len)
{
    if (len < 12)
        return;
    guint16 seq = (guint16)((data[2] << 8) | data[3]);
    guint32 ts =
        ((guint32)data[4] << 24) | ((guint32)data[5] << 16) | ((guint32)data[6] << 8) | data[7];
    guint64 ext;
    if (!t->any) {
        ext = 65536 + seq; /* room below for packets that come before it */
        t->any = TRUE;
        t->top_seq = ext;
    } else {
        ext = t->top_seq + (gint16)(seq - (guint16)t->top_seq);
        t->top_seq = MAX(t->top_seq, ext);
    }
    if (t->any_out && ext <= t->out_seq)
        return;
    for (GList *l = t->held.head; l; l = l->next)
        if (((Held *)l->data)->seq == ext)
            return;
    Held *h = g_new(Held, 1);
    h->seq = ext;
    h->ts = gst_rtp_buffer_ext_timestamp(&t->ext_ts, ts);
    h->arrival = arrival;
    h->buf = gst_buffer_new_memdup(data, len);
    g_queue_insert_sorted(&t->held, h, held_cmp, NULL);
    if (!t->primed) {
        Held *first = g_queue_peek_head(&t->held);
        if (t->held.length >= PRIME_PACKETS || arrival - first->arrival >= (gint64)PRIME_SPAN)
            prime(t);
    }
}

/* Releases what can go: nothing until every track is primed; then, once,
 * every track moves by the same amount so that the first video frame is
 * at 0 (audio and video stay in step; sound before that frame is dropped
 * in release_one(): Chromium's <video> meeting sound before the first
 * picture stalls at 0 and never finishes a seek); then all but the
 * reorder window, or all of an ended track, which then gets its EOS. */
static void
drain(Track *tracks, gboolean *shifted)
{
    for (int k = 0; k < N_KINDS; k++)
        if (tracks[k].src && !tracks[k].primed)
            return;
    if (!*shifted) {
        Track *v = &tracks[KIND_VIDEO];
        Held *first = g_queue_peek_head(&v->held); /* convert_journal(): there is one */
        gint64 start = first ? v->anchor_pts + media_time(v, first->ts) : 0;
        for (int k = 0; k < N_KINDS; k++)
            tracks[k].shift = -start;
        *shifted = TRUE;
    }
    for (int k = 0; k < N_KINDS; k++) {
        Track *t = &tracks[k];
        if (!t->src || t->eos)
            continue;
        while (t->held.length > (t->ending ? 0 : REORDER_WINDOW))
            release_one(t);
        if (t->ending) {
            gst_app_src_end_of_stream(GST_APP_SRC(t->src));
            t->eos = TRUE;
        }
    }
}

/* The track has no more packets. */
static void
track_end(Track *t)
{
    if (!t->src || t->ending)
        return;
    if (!t->primed)
        prime(t);
    t->ending = TRUE;
}

/* Builds the track's appsrc ! depayloader [! parser] ! MUX chain. */
static gboolean
track_chain(GstElement *pipe, GstElement *mux, Track *t, int kind, GError **error)
{
    g_autoptr(GstCaps) caps = gst_caps_from_string(t->caps);
    const GstStructure *s = caps ? gst_caps_get_structure(caps, 0) : NULL;
    const char *enc = s ? gst_structure_get_string(s, "encoding-name") : NULL;
    const char *chain = NULL;
    if (kind == KIND_VIDEO && !g_strcmp0(enc, "VP8"))
        chain = "rtpvp8depay";
    else if (kind == KIND_AUDIO && !g_strcmp0(enc, "OPUS"))
        chain = "rtpopusdepay ! opusparse";
    if (!chain || !gst_structure_get_int(s, "clock-rate", &t->rate)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "cannot record %s to WebM",
                    enc ? enc : "a track without caps");
        return FALSE;
    }
    t->kind = kind;
    t->ext_ts = G_MAXUINT64; /* gst_rtp_buffer_ext_timestamp(): none yet */
    t->src = gst_element_factory_make("appsrc", NULL);
    g_object_set(t->src, "caps", caps, "format", GST_FORMAT_TIME, "max-bytes", (guint64)0, "block",
                 FALSE, NULL);
    GstElement *bin = gst_parse_bin_from_description(chain, TRUE, NULL);
    gst_bin_add_many(GST_BIN(pipe), t->src, bin, NULL);
    return gst_element_link(t->src, bin) && gst_element_link(bin, mux);
}

/* The muxer needs data on every track to go on: holding a feeder back is
 * safe only while every other track has something queued or has ended. */
static void
throttle(Track *tracks, int kind, GstBus *bus)
{
    while (gst_app_src_get_current_level_bytes(GST_APP_SRC(tracks[kind].src)) > THROTTLE_BYTES) {
        for (int k = 0; k < N_KINDS; k++)
            if (k != kind && tracks[k].src && !tracks[k].eos &&
                gst_app_src_get_current_level_bytes(GST_APP_SRC(tracks[k].src)) == 0)
                return;
        g_autoptr(GstMessage) m =
            gst_bus_timed_pop_filtered(bus, 2 * GST_MSECOND, GST_MESSAGE_ERROR);
        if (m) {
            gst_bus_post(bus, gst_message_ref(m)); /* for the EOS wait */
            return;
        }
    }
}

/* Waits for EOS or an error on PIPE (already PLAYING); TRUE on EOS. */
static gboolean
wait_eos(GstElement *pipe, GError **error)
{
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(pipe));
    GstMessage *msg =
        gst_bus_timed_pop_filtered(bus, 300 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    gboolean ok = msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS;
    if (!ok) {
        GError *e = NULL;
        if (msg)
            gst_message_parse_error(msg, &e, NULL);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", e ? e->message : "timed out");
        g_clear_error(&e);
    }
    if (msg)
        gst_message_unref(msg);
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(bus);
    return ok;
}

/* Reads the journal IN twice: once for the tracks (caps, where each ends),
 * then feeding the packets through depayloaders into a WebM muxer. */
static gboolean
convert_journal(const char *in, const char *out, gboolean *empty, gint64 *lead_ms, GError **error)
{
    Track tracks[N_KINDS] = {{0}};
    JrnReader r;
    guint8 type, track;
    gint64 pts;
    const guint8 *data;
    gsize len;
    guint64 idx = 0;
    if (!jrn_reader_open(&r, in)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot read %s", in);
        return FALSE;
    }
    for (; jrn_next(&r, &type, &track, &pts, &data, &len); idx++) {
        if (track >= N_KINDS)
            continue;
        Track *t = &tracks[track];
        if (type == JRN_CAPS && !t->caps)
            t->caps = g_strndup((const char *)data, len);
        else if (type == JRN_RTP && t->caps) {
            t->packets++;
            t->last_record = idx;
        }
    }
    jrn_reader_close(&r);

    gboolean ok = FALSE;
    GstElement *pipe = gst_pipeline_new("finalize");
    GstElement *mux = gst_element_factory_make("webmmux", NULL);
    GstElement *sink = gst_element_factory_make("filesink", NULL);
    g_object_set(sink, "location", out, NULL);
    gst_bin_add_many(GST_BIN(pipe), mux, sink, NULL);
    gst_element_link(mux, sink);
    for (int k = 0; k < N_KINDS; k++)
        if (tracks[k].packets && !track_chain(pipe, mux, &tracks[k], k, error))
            goto out;
    if (!tracks[KIND_VIDEO].packets) {
        *empty = TRUE; /* nothing is journaled before the first keyframe */
        goto out;
    }
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(pipe));
    gst_element_set_state(pipe, GST_STATE_PLAYING);
    gboolean shifted = FALSE;
    jrn_reader_open(&r, in);
    for (idx = 0; jrn_next(&r, &type, &track, &pts, &data, &len); idx++) {
        if (type != JRN_RTP || track >= N_KINDS || !tracks[track].src || tracks[track].ending)
            continue;
        take_packet(&tracks[track], pts, data, len);
        if (idx == tracks[track].last_record)
            track_end(&tracks[track]);
        drain(tracks, &shifted);
        throttle(tracks, track, bus);
    }
    jrn_reader_close(&r);
    for (int k = 0; k < N_KINDS; k++)
        track_end(&tracks[k]);
    drain(tracks, &shifted);
    *lead_ms = tracks[KIND_VIDEO].shift / GST_MSECOND;
    gst_object_unref(bus);
    ok = wait_eos(pipe, error);
out:
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(pipe);
    for (int k = 0; k < N_KINDS; k++) {
        g_free(tracks[k].caps);
        Held *h;
        while ((h = g_queue_pop_head(&tracks[k].held))) {
            gst_buffer_unref(h->buf);
            g_free(h);
        }
    }
    return ok;
}

/* Remuxes a WebM file IN (the format before journals, possibly cut short)
 * into OUT with cues; TRUE on EOS. */
static gboolean
remux_webm(const char *in, const char *out, GError **error)
{
    GstElement *pipe = gst_pipeline_new("finalize");
    GstElement *src = gst_element_factory_make("filesrc", NULL);
    GstElement *demux = gst_element_factory_make("matroskademux", NULL);
    GstElement *mux = gst_element_factory_make("webmmux", NULL);
    GstElement *sink = gst_element_factory_make("filesink", NULL);
    g_object_set(src, "location", in, NULL);
    g_object_set(sink, "location", out, NULL);
    gst_bin_add_many(GST_BIN(pipe), src, demux, mux, sink, NULL);
    gst_element_link(src, demux);
    gst_element_link(mux, sink);
    g_signal_connect(demux, "pad-added", G_CALLBACK(on_demux_pad), mux);
    gst_element_set_state(pipe, GST_STATE_PLAYING);
    gboolean ok = wait_eos(pipe, error);
    gst_object_unref(pipe);
    return ok;
}

/* The duration of PATH as GStreamer's discoverer decodes it, in ms; -1 and
 * ERROR if it does not decode. */
static gint64
decoded_ms(const char *path, GError **error)
{
    g_autoptr(GstDiscoverer) disc = gst_discoverer_new(30 * GST_SECOND, error);
    if (!disc)
        return -1;
    g_autofree char *uri = gst_filename_to_uri(path, NULL);
    g_autoptr(GstDiscovererInfo) info = gst_discoverer_discover_uri(disc, uri, error);
    if (!info || gst_discoverer_info_get_result(info) != GST_DISCOVERER_OK) {
        if (error && !*error)
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "the file does not decode");
        return -1;
    }
    GstClockTime d = gst_discoverer_info_get_duration(info);
    return GST_CLOCK_TIME_IS_VALID(d) ? (gint64)(d / GST_MSECOND) : 0;
}

ConsultdRecState
rec_finalize_file(const char *in, const char *out, gint64 *duration_ms, gint64 *size,
                  gint64 *lead_ms, GError **error)
{
    *duration_ms = *size = *lead_ms = 0;
    GStatBuf st;
    if (g_stat(in, &st) != 0 || st.st_size < 64)
        return CONSULTD_REC_EMPTY; /* nothing, or not even a header */
    g_autoptr(GError) err = NULL;
    gboolean ok, empty = FALSE;
    if (jrn_is_journal(in)) {
        ok = convert_journal(in, out, &empty, lead_ms, &err);
        if (empty)
            return CONSULTD_REC_EMPTY;
    } else {
        ok = remux_webm(in, out, &err); /* recorded before journals */
    }
    /* A file cut short by a crash ends in an error after its last complete
     * cluster; what was remuxed up to there is still good. */
    GStatBuf ost;
    if (!ok && (g_stat(out, &ost) != 0 || ost.st_size < 64)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "finalizing failed: %s",
                    err ? err->message : "no output");
        return CONSULTD_REC_FAILED;
    }
    /* Check the result decodes and read its duration. */
    *duration_ms = decoded_ms(out, error);
    if (*duration_ms < 0)
        return CONSULTD_REC_FAILED;
    g_stat(out, &ost);
    *size = ost.st_size;
    if (*duration_ms == 0)
        return CONSULTD_REC_EMPTY;
    return CONSULTD_REC_READY;
}

/* ------------------------------------------------------------ composing */

typedef struct {
    GstElement *pipe, *vmix, *amix;
    gint64 offset_ns;
    guint x, y, width, height, zorder; /* its place in the picture */
} ComposeInput;

static void
on_decoded_pad(GstElement *dec, GstPad *pad, gpointer data)
{
    ComposeInput *in = data;
    g_autoptr(GstCaps) caps = gst_pad_get_current_caps(pad);
    if (!caps)
        caps = gst_pad_query_caps(pad, NULL);
    const char *name = gst_structure_get_name(gst_caps_get_structure(caps, 0));
    gboolean video = g_str_has_prefix(name, "video/");
    if (!video && !g_str_has_prefix(name, "audio/"))
        return;
    /* videoscale keeps the picture's aspect, with borders where it must. */
    g_autofree char *chain =
        video ? g_strdup_printf("videoconvert ! videoscale add-borders=true ! videorate ! "
                                "video/x-raw,width=%u,height=%u,pixel-aspect-ratio=1/1,"
                                "framerate=30/1",
                                in->width, in->height)
              : g_strdup("audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2");
    GstElement *bin = gst_parse_bin_from_description(chain, TRUE, NULL);
    gst_bin_add(GST_BIN(in->pipe), bin);
    gst_element_sync_state_with_parent(bin);
    GstPad *sink = gst_element_get_static_pad(bin, "sink");
    gst_pad_link(pad, sink);
    gst_object_unref(sink);
    GstPad *src = gst_element_get_static_pad(bin, "src");
    /* Place this participant on the common timeline. */
    gst_pad_set_offset(src, in->offset_ns);
    GstPad *mp = gst_element_request_pad_simple(video ? in->vmix : in->amix, "sink_%u");
    if (video)
        g_object_set(mp, "xpos", (int)in->x, "ypos", (int)in->y, "zorder", in->zorder, NULL);
    gst_pad_link(src, mp);
    gst_object_unref(src);
    gst_object_unref(mp);
}

/* The Opus pre-skip of CAPS (samples at 48 kHz, the first header's bytes
 * 10-11) as a time; 0 if it has none. */
static GstClockTime
opus_preskip(GstCaps *caps)
{
    const GValue *hdrs =
        caps ? gst_structure_get_value(gst_caps_get_structure(caps, 0), "streamheader") : NULL;
    if (!hdrs || !GST_VALUE_HOLDS_ARRAY(hdrs) || gst_value_array_get_size(hdrs) < 1)
        return 0;
    GstBuffer *head = gst_value_get_buffer(gst_value_array_get_value(hdrs, 0));
    guint8 b[2];
    if (!head || gst_buffer_extract(head, 10, b, 2) != 2)
        return 0;
    return gst_util_uint64_scale_int(b[0] | (b[1] << 8), GST_SECOND, 48000);
}

/* A WebM player takes the pre-skip (CodecDelay) off every audio block's
 * time, so opusenc's first packet, at 0, would start before the picture;
 * Chromium's <video> then stalls at 0 and never finishes a seek.  That
 * packet holds the encoder's lookahead only: it goes. */
static GstPadProbeReturn
drop_before_preskip(GstPad *pad, GstPadProbeInfo *info, gpointer unused)
{
    GstBuffer *b = GST_PAD_PROBE_INFO_BUFFER(info);
    GstCaps *caps = gst_pad_get_current_caps(pad);
    GstClockTime skip = opus_preskip(caps);
    if (caps)
        gst_caps_unref(caps);
    if (GST_BUFFER_PTS_IS_VALID(b) && GST_BUFFER_PTS(b) < skip)
        return GST_PAD_PROBE_DROP;
    return GST_PAD_PROBE_REMOVE;
}

gboolean
rec_compose(const char *const *inputs, const gint64 *offsets_ms, const gboolean *screens,
            guint n_inputs, const char *out, void (*progress)(int percent, gpointer data),
            gpointer data, gint64 *duration_ms, gint64 *size, GError **error)
{
    *duration_ms = *size = 0;
    guint n_screens = 0;
    for (guint i = 0; screens && i < n_inputs; i++)
        n_screens += screens[i] != FALSE;
    guint width = n_screens ? 1280 : 640 * MAX(n_inputs - n_screens, 1);
    guint height = n_screens ? 720 : 480;
    g_autofree char *esc = g_strescape(out, NULL);
    g_autofree char *desc = g_strdup_printf(
        "compositor name=vmix background=black ! "
        "video/x-raw,width=%u,height=%u,framerate=30/1 ! "
        "videoconvert ! vp8enc deadline=1 cpu-used=8 target-bitrate=%u threads=1 ! "
        "queue ! mux. audiomixer name=amix ! audioconvert ! opusenc name=aenc ! queue ! mux. "
        "webmmux name=mux ! filesink location=\"%s\"",
        width, height, n_screens ? 2000000 : 1200000, esc);
    GError *perr = NULL;
    GstElement *pipe = gst_parse_launch(desc, &perr);
    if (!pipe) {
        g_propagate_error(error, perr);
        return FALSE;
    }
    g_clear_error(&perr);
    GstElement *vmix = gst_bin_get_by_name(GST_BIN(pipe), "vmix");
    GstElement *amix = gst_bin_get_by_name(GST_BIN(pipe), "amix");
    GstElement *aenc = gst_bin_get_by_name(GST_BIN(pipe), "aenc");
    GstPad *aout = gst_element_get_static_pad(aenc, "src");
    gst_pad_add_probe(aout, GST_PAD_PROBE_TYPE_BUFFER, drop_before_preskip, NULL, NULL);
    gst_object_unref(aout);
    gst_object_unref(aenc);
    ComposeInput *ins = g_new0(ComposeInput, n_inputs);
    gint64 total_ms = 0;
    for (guint i = 0, cams = 0; i < n_inputs; i++) {
        ins[i] = (ComposeInput){pipe, vmix, amix, offsets_ms[i] * GST_MSECOND};
        ComposeInput *in = &ins[i];
        if (screens && screens[i]) { /* one after the other, the later on top */
            in->width = 960;
            in->height = 720;
            in->zorder = i;
        } else if (n_screens) { /* small, on the right, one above the other */
            in->x = 960;
            in->y = 240 * MIN(cams, 2);
            in->width = 320;
            in->height = 240;
            in->zorder = n_inputs + cams++;
        } else { /* side by side */
            in->x = 640 * cams++;
            in->width = 640;
            in->height = 480;
        }
        GstElement *src = gst_element_factory_make("filesrc", NULL);
        GstElement *dec = gst_element_factory_make("decodebin", NULL);
        g_object_set(src, "location", inputs[i], NULL);
        gst_bin_add_many(GST_BIN(pipe), src, dec, NULL);
        gst_element_link(src, dec);
        g_signal_connect(dec, "pad-added", G_CALLBACK(on_decoded_pad), &ins[i]);
    }
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(pipe));
    gst_element_set_state(pipe, GST_STATE_PLAYING);
    gboolean ok = FALSE, done = FALSE;
    gint64 moved = g_get_monotonic_time(), last_pos = -1;
    while (!done) {
        GstMessage *msg =
            gst_bus_timed_pop_filtered(bus, GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
        if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
            ok = done = TRUE;
        } else if (msg) {
            GError *e = NULL;
            gst_message_parse_error(msg, &e, NULL);
            g_propagate_error(error, e);
            done = TRUE;
        } else {
            /* Bounded: inputs with broken timestamps once made videorate
             * fill hours of frames; a stuck element would hold the queue of
             * combined files for good. */
            gint64 pos = 0, dur = 0, now = g_get_monotonic_time();
            if (gst_element_query_position(pipe, GST_FORMAT_TIME, &pos) && pos > last_pos) {
                last_pos = pos;
                moved = now;
            }
            if (gst_element_query_duration(pipe, GST_FORMAT_TIME, &dur) && dur > 0) {
                total_ms = dur / GST_MSECOND;
                if (pos > dur + dur / 2 + 10 * GST_SECOND) {
                    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                                "the composition runs past the end of its inputs");
                    done = TRUE;
                }
                if (progress)
                    progress((int)MIN(99, 100 * pos / dur), data);
            }
            if (!done && now - moved > 60 * G_TIME_SPAN_SECOND) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                            "the composition made no progress for 60 s");
                done = TRUE;
            }
        }
        if (msg)
            gst_message_unref(msg);
    }
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(bus);
    gst_object_unref(vmix);
    gst_object_unref(amix);
    gst_object_unref(pipe);
    g_free(ins);
    if (!ok)
        return FALSE;
    GStatBuf st;
    if (g_stat(out, &st) == 0)
        *size = st.st_size;
    *duration_ms = decoded_ms(out, NULL);
    if (*duration_ms < 0)
        *duration_ms = total_ms;
    if (progress)
        progress(100, data);
    return TRUE;
}
