/* whip.c - see whip.h.
 *
 * Sessions.  A WHIP/WHEP session is created by POST, named by a random id in
 * its Location, and owned by the user who created it: PATCH and DELETE from
 * anyone else get 404.  Its ETag changes never (we have no ICE restart), so
 * If-Match only has to equal it.
 *
 * An offer's request is suspended while a worker answers (or while one
 * starts); offer_done() answers it and resumes it.
 */
#include "api/whip.h"

#include <string.h>

#include "api/ice.h"
#include "core/sdpscan.h"
#include "workers/media.h"

#define SDP_MAX (64 * 1024)
/* Trickled candidates: a browser gathers a handful per m-line; these caps
 * keep one client from queueing thousands of messages for a worker. */
#define CANDIDATES_PER_PATCH 64
#define CANDIDATES_PER_SESSION 256

static guint
count_candidates(const char *frag)
{
    guint n = 0;
    for (const char *p = frag; (p = strstr(p, "a=candidate:")); p += 12)
        n++;
    return n;
}

static const char *
content_type(SigReq *r)
{
    const char *ct = sig_req_get_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    return ct ? ct : "";
}

static gboolean
is_live(StoreConsultStatus st)
{
    return st == STORE_CONSULT_LIVE || st == STORE_CONSULT_INTERRUPTED;
}

static void
offer_done(SigOfferResult res, const SigMediaSession *s, const char *text, gpointer data)
{
    SigReq *r = data;
    switch (res) {
    case SIG_OFFER_OK: {
        /* Several nodes: under this node's prefix, so that PATCH and
         * DELETE go straight here through the entry point. */
        g_autofree char *prefix = store_shared(r->app->store)
                                      ? g_strdup_printf("/n/%s", r->app->cfg->node_id)
                                      : g_strdup("");
        g_autofree char *loc = g_strdup_printf(
            "%s%s/%s/consultations/%" G_GINT64_FORMAT "/sessions/%s", r->app->cfg->public_url,
            prefix, s->publish ? "whip" : "whep", s->consultation, s->id);
        g_autofree char *etag = g_strdup_printf("\"%s\"", s->etag);
        sig_req_header(r, MHD_HTTP_HEADER_LOCATION, loc);
        sig_req_header(r, MHD_HTTP_HEADER_ETAG, etag);
        sig_req_header(r, "Access-Control-Expose-Headers", "Location, ETag, Link");
        sig_ice_link_headers(r);
        sig_reply_data(r, 201, "application/sdp", text, strlen(text));
        break;
    }
    case SIG_OFFER_BAD: sig_reply_error(r, 400, "bad_sdp", "%s", text); break;
    case SIG_OFFER_NO_CODEC: sig_reply_error(r, 400, "no_usable_codec", "%s", text); break;
    case SIG_OFFER_NOT_LIVE: sig_reply_error(r, 409, "not_live", "%s", text); break;
    case SIG_OFFER_UNAVAILABLE:
        sig_req_header(r, "Retry-After", "2");
        sig_reply_error(r, 503, "media_unavailable", "%s", text);
        break;
    }
    if (r->suspended)
        sig_req_resume(r);
}

/* Several nodes: a consultation's media lives on one (placed at accept,
 * or now if its node is gone).  A request for it elsewhere is sent there:
 * 307 to the same path under the owner's prefix, which the entry point
 * routes to the owner (RFC 9725 section 4.5); the client repeats the POST
 * there.  FALSE if replied. */
static gboolean
owned_here(SigReq *r, gint64 id, ConsultdStream stream)
{
    SigApp *app = r->app;
    if (!store_shared(app->store))
        return TRUE;
    g_autofree char *node = NULL, *url = NULL;
    g_autoptr(GError) err = NULL;
    if (!store_consultation_place(app->store, id, &node, &url, &err)) {
        if (g_error_matches(err, STORE_ERROR, STORE_ERROR_FULL)) {
            sig_req_header(r, "Retry-After", "5");
            sig_reply_error(r, 503, "media_unavailable", "%s", err->message);
        } else {
            sig_reply_store_error(r, err);
        }
        return FALSE;
    }
    if (!g_strcmp0(node, app->cfg->node_id))
        return TRUE;
    /* The path without its query: the one query parameter goes on. */
    g_autofree char *loc = g_strdup_printf(
        "/n/%s%s%s", node, r->path, stream == CONSULTD_STREAM_SCREEN ? "?stream=screen" : "");
    sig_req_header(r, MHD_HTTP_HEADER_LOCATION, loc);
    sig_req_header(r, "Access-Control-Expose-Headers", "Location");
    sig_reply_error(r, 307, "elsewhere", "this consultation's media is on node %s", node);
    return FALSE;
}

static void
media_post(SigReq *r, gboolean publish)
{
    SigApp *app = r->app;
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return;
    g_autoptr(GError) err = NULL;
    g_autoptr(StoreConsultation) c = store_consultation_get(app->store, id, &err);
    if (!c) {
        sig_reply_store_error(r, err);
        return;
    }
    ConsultdRole role = c->teacher_id == r->user->id   ? CONSULTD_ROLE_TEACHER
                        : c->student_id == r->user->id ? CONSULTD_ROLE_STUDENT
                                                       : CONSULTD_N_ROLES;
    if (role == CONSULTD_N_ROLES) {
        sig_reply_error(r, 403, "forbidden", "only the consultation's participants take part");
        return;
    }
    /* ?stream=screen: a shared screen, its own session next to the camera
     * (published with WHIP, received with a second WHEP session). */
    const char *sname = sig_req_query(r, "stream");
    ConsultdStream stream = CONSULTD_STREAM_CAMERA;
    if (sname && !consultd_stream_parse(sname, &stream)) {
        sig_reply_error(r, 400, "bad_stream", "stream is camera or screen");
        return;
    }
    if (!is_live(c->status)) {
        sig_reply_error(r, 409, "not_live", "the consultation is %s, not live",
                        store_consult_status_name(c->status));
        return;
    }
    if (!owned_here(r, id, stream))
        return;
    if (g_ascii_strncasecmp(content_type(r), "application/sdp", 15)) {
        sig_reply_error(r, 415, "unsupported_media_type", "the offer must be application/sdp");
        return;
    }
    if (r->body->len > SDP_MAX) {
        sig_reply_error(r, 413, "body_too_large", "an SDP offer may have at most %d bytes",
                        SDP_MAX);
        return;
    }
    const char *sdp = r->body->str;
    if (strlen(sdp) != r->body->len || !g_utf8_validate(sdp, -1, NULL) ||
        !g_str_has_prefix(sdp, "v=0")) {
        sig_reply_error(r, 400, "bad_sdp", "the body is not an SDP offer");
        return;
    }
    SigSdpOffer *scan = sig_sdp_scan(sdp);
    if (!sig_sdp_offer_usable(scan)) {
        sig_sdp_offer_free(scan);
        sig_reply_error(r, 400, "bad_sdp",
                        "the offer needs m= lines, a=ice-ufrag and a=fingerprint");
        return;
    }
    SigMediaSession *s = g_new0(SigMediaSession, 1);
    s->remote_ufrag = g_steal_pointer(&scan->ufrag);
    s->mids = g_ptr_array_ref(scan->mids);
    sig_sdp_offer_free(scan);
    s->consultation = id;
    s->user = r->user->id;
    s->role = role;
    s->stream = stream;
    s->publish = publish;
    sig_media_offer(app, s, sdp, offer_done, r);
    if (!r->response)
        sig_req_suspend(r); /* offer_done() comes later */
}

void
sig_h_whip_post(SigReq *r)
{
    media_post(r, TRUE);
}

void
sig_h_whep_post(SigReq *r)
{
    media_post(r, FALSE);
}

void
sig_h_whip_options(SigReq *r)
{
    sig_req_header(r, "Accept-Post", "application/sdp");
    sig_req_header(r, MHD_HTTP_HEADER_ALLOW, "OPTIONS, POST");
    sig_reply_empty(r, 204);
}

/* The session named by the path, if it is the caller's; else replies 404. */
static SigMediaSession *
own_session(SigReq *r)
{
    SigMediaSession *s = sig_media_session_find(r->app, r->params[1]);
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return NULL;
    gboolean whip = g_str_has_prefix(r->path, "/whip/");
    if (!s || s->consultation != id || s->user != r->user->id || s->publish != whip) {
        sig_reply_error(r, 404, "not_found", "no such session");
        return NULL;
    }
    const char *im = sig_req_get_header(r, MHD_HTTP_HEADER_IF_MATCH);
    if (im && !sig_etag_match(im, s->etag)) {
        sig_reply_error(r, 412, "precondition_failed", "If-Match does not match the ETag");
        return NULL;
    }
    return s;
}

static void
trickle_one(guint mline, const char *candidate, gpointer data)
{
    sig_media_session_trickle(data, mline, candidate);
}

void
sig_h_media_session_patch(SigReq *r)
{
    SigMediaSession *s = own_session(r);
    if (!s)
        return;
    if (g_ascii_strncasecmp(content_type(r), "application/trickle-ice-sdpfrag", 31)) {
        sig_reply_error(r, 415, "unsupported_media_type",
                        "PATCH takes application/trickle-ice-sdpfrag");
        return;
    }
    /* Candidates go on to the worker as GVariant strings, which must be
     * UTF-8 (GLib refuses others with a critical). */
    if (strlen(r->body->str) != r->body->len || r->body->len > SDP_MAX ||
        !g_utf8_validate(r->body->str, (gssize)r->body->len, NULL)) {
        sig_reply_error(r, 400, "bad_sdpfrag", "the fragment is not UTF-8 text");
        return;
    }
    guint n = count_candidates(r->body->str);
    if (n > CANDIDATES_PER_PATCH || s->candidates + n > CANDIDATES_PER_SESSION) {
        sig_reply_error(r, 400, "too_many_candidates",
                        "at most %d candidates a PATCH and %d a session", CANDIDATES_PER_PATCH,
                        CANDIDATES_PER_SESSION);
        return;
    }
    s->candidates += n;
    /* An ICE restart (new credentials) is not supported by webrtcbin 1.22:
     * RFC 9725 allows 422 for that when only trickle is. */
    if (!sig_sdpfrag_each(r->body->str, s->remote_ufrag, s->mids, trickle_one, s)) {
        sig_reply_error(r, 422, "ice_restart_unsupported", "ICE restarts are not supported");
        return;
    }
    sig_reply_empty(r, 204);
}

void
sig_h_media_session_delete(SigReq *r)
{
    SigMediaSession *s = own_session(r);
    if (!s)
        return;
    sig_media_session_delete(r->app, s);
    sig_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
}

void
sig_h_media_workers(SigReq *r)
{
    g_autoptr(GArray) ws = sig_media_workers(r->app);
    json_t *arr = json_array();
    for (guint i = 0; i < ws->len; i++) {
        SigWorkerInfo *w = &g_array_index(ws, SigWorkerInfo, i);
        json_array_append_new(arr,
                              json_pack("{s:I, s:b, s:I, s:I, s:I}", "index", (json_int_t)w->index,
                                        "ready", w->ready, "pid", (json_int_t)w->pid,
                                        "consultations", (json_int_t)w->consultations,
                                        "offers_waiting", (json_int_t)w->offers_waiting));
    }
    sig_reply_json(r, 200, json_pack("{s:o}", "workers", arr));
}
