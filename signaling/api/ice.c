/* ice.c - see ice.h.
 *
 * TURN credentials are a way through the school's firewall for whoever
 * holds them, so they are minted only for what they are for: a
 * participant of a consultation that is requested or live, for
 * media-turn-ttl seconds (default 2 h), at most TURN_PER_MIN times a
 * minute per user.  Anyone else gets the STUN server only.
 */
#include "api/ice.h"

#include <string.h>

#include "core/ratelimit.h"

#define TURN_PER_MIN 20

struct SigIce {
    SigLimiter *per_user;
};

SigIce *
sig_ice_new(SigApp *app)
{
    SigIce *ice = g_new0(SigIce, 1);
    ice->per_user = sig_limiter_new(TURN_PER_MIN, 60);
    app->ice = ice;
    return ice;
}

void
sig_ice_free(SigIce *ice)
{
    if (!ice)
        return;
    sig_limiter_free(ice->per_user);
    g_free(ice);
}

void
sig_ice_turn_credential(const char *secret, gint64 user_id, gint64 expires, char **username,
                        char **password)
{
    *username = g_strdup_printf("%" G_GINT64_FORMAT ":%" G_GINT64_FORMAT, expires, user_id);
    g_autoptr(GHmac) h = g_hmac_new(G_CHECKSUM_SHA1, (const guchar *)secret, strlen(secret));
    g_hmac_update(h, (const guchar *)*username, -1);
    guint8 digest[20];
    gsize len = sizeof digest;
    g_hmac_get_digest(h, digest, &len);
    *password = g_base64_encode(digest, len);
}

typedef void (*EachServer)(const char *url, const char *username, const char *password,
                           gpointer data);

/* Calls FN for the STUN server, then, if TURN (R's user may have a
 * credential), for each TURN URL. */
static void
each_server(SigReq *r, gboolean turn, EachServer fn, gpointer data)
{
    const SigConfig *cfg = r->app->cfg;
    if (*cfg->media_stun)
        fn(cfg->media_stun, NULL, NULL, data);
    if (!*cfg->media_turn || !turn)
        return;
    g_autofree char *user = NULL, *pass = NULL;
    if (*cfg->media_turn_secret)
        sig_ice_turn_credential(cfg->media_turn_secret, r->user->id,
                                g_get_real_time() / G_USEC_PER_SEC + cfg->media_turn_ttl, &user,
                                &pass);
    g_auto(GStrv) urls = g_strsplit(cfg->media_turn, ",", -1);
    for (guint i = 0; urls[i]; i++) {
        g_strstrip(urls[i]);
        if (*urls[i])
            fn(urls[i], user, pass, data);
    }
}

static void
add_json(const char *url, const char *username, const char *password, gpointer data)
{
    json_t *s = json_pack("{s:[s]}", "urls", url);
    if (username) {
        json_object_set_new(s, "username", json_string(username));
        json_object_set_new(s, "credential", json_string(password));
    }
    json_array_append_new(data, s);
}

void
sig_h_ice_servers(SigReq *r)
{
    gboolean turn = FALSE;
    if (*r->app->cfg->media_turn) {
        g_autoptr(GError) err = NULL;
        gint64 open = store_consultations_open_for(r->app->store, r->user->id, &err);
        if (open < 0) {
            sig_reply_store_error(r, err);
            return;
        }
        guint wait = open ? sig_limiter_hit(r->app->ice->per_user, r->user->username) : 0;
        if (wait) {
            sig_reply_retry(r, 429, "rate_limited", wait, "too many TURN credentials");
            return;
        }
        turn = open > 0;
    }
    json_t *arr = json_array();
    each_server(r, turn, add_json, arr);
    sig_req_header(r, "Cache-Control", "no-store"); /* holds a credential */
    sig_reply_json(r, 200,
                   json_pack("{s:o, s:I}", "ice_servers", arr, "ttl",
                             (json_int_t)r->app->cfg->media_turn_ttl));
}

static void
add_link(const char *url, const char *username, const char *password, gpointer data)
{
    g_autofree char *link =
        username ? g_strdup_printf("<%s>; rel=\"ice-server\"; username=\"%s\"; credential=\"%s\";"
                                   " credential-type=\"password\"",
                                   url, username, password)
                 : g_strdup_printf("<%s>; rel=\"ice-server\"", url);
    sig_req_header(data, "Link", link);
}

void
sig_ice_link_headers(SigReq *r)
{
    each_server(r, TRUE, add_link, r); /* a WHIP/WHEP 201: a live participant */
}
