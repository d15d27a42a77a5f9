/* sigv4.c - see sigv4.h.
 *
 * Signing, as AWS's "Signature Version 4 signing process" describes it:
 *
 *   canonical request = METHOD \n PATH \n QUERY \n (name:value \n)* \n
 *                       signed-names \n PAYLOAD-HASH
 *   string to sign    = AWS4-HMAC-SHA256 \n AMZ-DATE \n SCOPE \n
 *                       hex(sha256(canonical request))
 *   scope             = DATE/REGION/SERVICE/aws4_request
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, DATE), REGION),
 *                       SERVICE), "aws4_request")
 *   signature         = hex(HMAC(signing key, string to sign))
 */
#include "sigv4.h"

#include <string.h>

char *
sigv4_uri_encode(const char *v, gboolean keep_slash)
{
    GString *out = g_string_sized_new(strlen(v) + 8);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (g_ascii_isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
            (keep_slash && *p == '/'))
            g_string_append_c(out, (char)*p);
        else
            g_string_append_printf(out, "%%%02X", *p);
    }
    return g_string_free(out, FALSE);
}

char *
sigv4_sha256_hex(const void *data, gsize len)
{
    return g_compute_checksum_for_data(G_CHECKSUM_SHA256, data, len);
}

char *
sigv4_amz_date(gint64 t)
{
    g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(t);
    return g_date_time_format(dt, "%Y%m%dT%H%M%SZ");
}

/* OUT (32 bytes) = HMAC-SHA256(KEY, DATA). */
static void
hmac(const guint8 *key, gsize key_len, const char *data, guint8 out[32])
{
    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, key, key_len);
    g_hmac_update(h, (const guchar *)data, -1);
    gsize n = 32;
    g_hmac_get_digest(h, out, &n);
    g_hmac_unref(h);
}

/* The hex signature of CANONICAL (a canonical request) at AMZ_DATE. */
static char *
sign(const Sigv4Keys *k, const char *canonical, const char *amz_date, const char *scope)
{
    g_autofree char *hash = sigv4_sha256_hex(canonical, strlen(canonical));
    g_autofree char *to_sign =
        g_strdup_printf("AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, hash);
    g_autofree char *secret = g_strconcat("AWS4", k->secret_key, NULL);
    g_autofree char *day = g_strndup(amz_date, 8);
    guint8 key[32];
    hmac((const guint8 *)secret, strlen(secret), day, key);
    hmac(key, 32, k->region, key);
    hmac(key, 32, k->service, key);
    hmac(key, 32, "aws4_request", key);
    guint8 sig[32];
    hmac(key, 32, to_sign, sig);
    char *hex = g_malloc(65);
    for (int i = 0; i < 32; i++)
        g_snprintf(hex + 2 * i, 3, "%02x", sig[i]);
    return hex;
}

static char *
scope_of(const Sigv4Keys *k, const char *amz_date)
{
    return g_strdup_printf("%.8s/%s/%s/aws4_request", amz_date, k->region, k->service);
}

typedef struct {
    char *name; /* lower case */
    const char *value;
} Header;

static int
header_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(((const Header *)a)->name, ((const Header *)b)->name);
}

char *
sigv4_authorization(const Sigv4Keys *k, const char *method, const char *path, const char *query,
                    const char *const *headers, const char *payload_hash, const char *amz_date)
{
    g_autoptr(GArray) hs = g_array_new(FALSE, FALSE, sizeof(Header));
    for (guint i = 0; headers[i] && headers[i + 1]; i += 2) {
        Header h = {g_ascii_strdown(headers[i], -1), headers[i + 1]};
        g_array_append_val(hs, h);
    }
    g_array_sort(hs, header_cmp);
    GString *canon = g_string_new(NULL);
    GString *names = g_string_new(NULL);
    g_string_append_printf(canon, "%s\n%s\n%s\n", method, path, query);
    for (guint i = 0; i < hs->len; i++) {
        Header *h = &g_array_index(hs, Header, i);
        g_autofree char *v = g_strstrip(g_strdup(h->value));
        g_string_append_printf(canon, "%s:%s\n", h->name, v);
        g_string_append_printf(names, "%s%s", i ? ";" : "", h->name);
        g_free(h->name);
    }
    g_string_append_printf(canon, "\n%s\n%s", names->str, payload_hash);
    g_autofree char *scope = scope_of(k, amz_date);
    g_autofree char *sig = sign(k, canon->str, amz_date, scope);
    char *out = g_strdup_printf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                                k->access_key, scope, names->str, sig);
    g_string_free(canon, TRUE);
    g_string_free(names, TRUE);
    return out;
}

char *
sigv4_presign_query(const Sigv4Keys *k, const char *method, const char *host, const char *path,
                    const char *extra, const char *amz_date, guint expires)
{
    g_autofree char *scope = scope_of(k, amz_date);
    g_autofree char *cred_raw = g_strdup_printf("%s/%s", k->access_key, scope);
    g_autofree char *cred = sigv4_uri_encode(cred_raw, FALSE);
    /* The X-Amz- names sort after lower-case ones only if EXTRA has none
     * starting with an upper-case letter before 'X': callers pass
     * response-* parameters, which sort after them (ASCII 'X' < 'r'). */
    g_autofree char *query =
        g_strdup_printf("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s&X-Amz-Date=%s"
                        "&X-Amz-Expires=%u&X-Amz-SignedHeaders=host%s%s",
                        cred, amz_date, expires, extra && *extra ? "&" : "", extra ? extra : "");
    g_autofree char *canon =
        g_strdup_printf("%s\n%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD", method, path, query, host);
    g_autofree char *sig = sign(k, canon, amz_date, scope);
    return g_strdup_printf("%s&X-Amz-Signature=%s", query, sig);
}

gboolean
sigv4_store_parse(Sigv4Store *st, const char *where, const char *endpoint, const char *region,
                  const char *addressing)
{
    memset(st, 0, sizeof *st);
    if (!g_str_has_prefix(where, "s3://") || !where[5] || where[5] == '/')
        return FALSE;
    g_autofree char *aws = g_strdup_printf("https://s3.%s.amazonaws.com", region);
    const char *e = endpoint && *endpoint ? endpoint : aws;
    const char *sep = strstr(e, "://");
    if (!sep || !sep[3])
        return FALSE;
    const char *b = where + 5, *slash = strchr(b, '/');
    st->bucket = slash ? g_strndup(b, slash - b) : g_strdup(b);
    g_autofree char *p = g_strstrip(g_strdup(slash ? slash + 1 : ""));
    gsize n = strlen(p);
    while (n && p[n - 1] == '/')
        p[--n] = '\0';
    st->prefix = n ? g_strconcat(p, "/", NULL) : g_strdup("");
    st->scheme = g_strndup(e, sep - e);
    st->authority = g_strndup(sep + 3, strcspn(sep + 3, "/"));
    st->virtual_host = !g_strcmp0(addressing, "virtual") ||
                       (g_strcmp0(addressing, "path") && !(endpoint && *endpoint));
    return TRUE;
}

void
sigv4_store_clear(Sigv4Store *st)
{
    g_clear_pointer(&st->bucket, g_free);
    g_clear_pointer(&st->prefix, g_free);
    g_clear_pointer(&st->scheme, g_free);
    g_clear_pointer(&st->authority, g_free);
}

void
sigv4_store_locate(const Sigv4Store *st, const char *key, char **host, char **path)
{
    g_autofree char *full = key ? g_strconcat(st->prefix, key, NULL) : g_strdup("");
    g_autofree char *enc = sigv4_uri_encode(full, TRUE);
    if (st->virtual_host) {
        *host = g_strdup_printf("%s.%s", st->bucket, st->authority);
        *path = g_strdup_printf("/%s", enc);
    } else {
        *host = g_strdup(st->authority);
        *path =
            key ? g_strdup_printf("/%s/%s", st->bucket, enc) : g_strdup_printf("/%s", st->bucket);
    }
}
