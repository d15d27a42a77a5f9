/* objects.c - see objects.h. */
#include "objects.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sigv4.h"

#define OBJ_ERROR (g_quark_from_static_string("obj-error"))
#define PART_SIZE_DEFAULT (16 * 1024 * 1024)
#define ATTEMPTS 4 /* per request, 0.5 s, 1 s, 2 s apart */

struct ObjStore {
    char *dir;        /* dir: the directory; NULL for s3 */
    Sigv4Store where; /* s3 */
    char *region, *access_key, *secret_key;
    gint64 part_size;
};

void
obj_store_free(ObjStore *s)
{
    if (!s)
        return;
    g_free(s->dir);
    sigv4_store_clear(&s->where);
    g_free(s->region);
    g_free(s->access_key);
    g_free(s->secret_key);
    g_free(s);
}

static const char *
env(const char *name, const char *dflt)
{
    const char *v = g_getenv(name);
    return v && *v ? v : dflt;
}

ObjStore *
obj_store_from_env(GError **error)
{
    const char *where = env("CONSULTD_RECORDINGS_STORE", "");
    ObjStore *s = g_new0(ObjStore, 1);
    if (g_str_has_prefix(where, "dir:") && where[4] == '/') {
        s->dir = g_strdup(where + 4);
        return s;
    }
    s->region = g_strdup(env("CONSULTD_S3_REGION", "us-east-1"));
    if (!sigv4_store_parse(&s->where, where, env("CONSULTD_S3_ENDPOINT", ""), s->region,
                           env("CONSULTD_S3_ADDRESSING", "auto"))) {
        g_set_error(error, OBJ_ERROR, 0,
                    "the recordings store must be dir:/path or s3://bucket, and s3-endpoint "
                    "http(s)://host[:port]");
        obj_store_free(s);
        return NULL;
    }
    s->access_key = g_strdup(env("CONSULTD_S3_ACCESS_KEY", ""));
    s->secret_key = g_strdup(env("CONSULTD_S3_SECRET_KEY", ""));
    s->part_size = g_ascii_strtoll(env("CONSULTD_S3_PART_SIZE", "0"), NULL, 10);
    if (s->part_size <= 0)
        s->part_size = PART_SIZE_DEFAULT;
    if (!*s->access_key || !*s->secret_key) {
        g_set_error(error, OBJ_ERROR, 0, "s3-access-key and s3-secret-key are not set");
        obj_store_free(s);
        return NULL;
    }
    return s;
}

/* ------------------------------------------------------------------ dir: */

static char *
dir_path(ObjStore *s, const char *key)
{
    return g_build_filename(s->dir, key, NULL);
}

/* Reads FD from the start into the checksum CK; the bytes read. */
static gint64
checksum_fd(int fd, GChecksum *ck)
{
    guint8 buf[64 * 1024];
    gint64 total = 0;
    ssize_t n;
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        g_checksum_update(ck, buf, n);
        total += n;
    }
    return n < 0 ? -1 : total;
}

static gboolean
dir_put(ObjStore *s, const char *file, const char *key, gint64 *size, char **etag, GError **error)
{
    g_autofree char *dst = dir_path(s, key);
    g_autofree char *tmp = g_strdup_printf("%s.part-%d", dst, (int)getpid());
    g_autofree char *parent = g_path_get_dirname(dst);
    if (g_mkdir_with_parents(parent, 0750) != 0) {
        g_set_error(error, OBJ_ERROR, errno, "cannot create %s: %s", parent, g_strerror(errno));
        return FALSE;
    }
    int in = g_open(file, O_RDONLY | O_CLOEXEC, 0);
    int out = in < 0 ? -1 : g_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    gboolean ok = in >= 0 && out >= 0;
    g_autoptr(GChecksum) want = g_checksum_new(G_CHECKSUM_SHA256);
    guint8 buf[64 * 1024];
    ssize_t n = 0;
    gint64 total = 0;
    while (ok && (n = read(in, buf, sizeof buf)) > 0) {
        g_checksum_update(want, buf, n);
        ok = write(out, buf, n) == n;
        total += n;
    }
    ok = ok && n == 0 && fsync(out) == 0;
    int err = errno;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0 && ok) {
        ok = FALSE;
        err = errno;
    }
    /* Read back what landed: the same bytes, or it does not count. */
    int back = ok ? g_open(tmp, O_RDONLY | O_CLOEXEC, 0) : -1;
    g_autoptr(GChecksum) got = g_checksum_new(G_CHECKSUM_SHA256);
    gint64 back_n = back >= 0 ? checksum_fd(back, got) : -1;
    if (back >= 0)
        close(back);
    if (ok &&
        (back_n != total || strcmp(g_checksum_get_string(want), g_checksum_get_string(got)))) {
        g_set_error(error, OBJ_ERROR, 0, "%s does not read back as written", tmp);
        g_unlink(tmp);
        return FALSE;
    }
    if (!ok || g_rename(tmp, dst) != 0) {
        if (ok)
            err = errno;
        g_set_error(error, OBJ_ERROR, err, "cannot store %s: %s", dst, g_strerror(err));
        g_unlink(tmp);
        return FALSE;
    }
    int d = g_open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (d >= 0) {
        fsync(d); /* the rename itself */
        close(d);
    }
    *size = total;
    *etag = g_strdup(g_checksum_get_string(want));
    return TRUE;
}

/* ------------------------------------------------------------------- s3 */

typedef struct {
    const char *method;
    const char *key;   /* relative to the prefix; NULL: the bucket */
    const char *query; /* canonical query, "" if none */
    /* the body: from memory, or COUNT bytes of FD at OFFSET */
    const guint8 *body;
    gsize body_len;
    int fd;
    gint64 offset, count;
    const char *payload_hash;
    const char *range; /* "bytes=a-b" or NULL */
    int out_fd;        /* GET: the body goes here (-1: into reply) */
    /* out */
    long status;
    GString *reply;
    char *etag;
    gint64 length;
    gint64 sent;
} Req;

static size_t
on_body(char *data, size_t size, size_t n, void *p)
{
    Req *r = p;
    size_t len = size * n;
    if (r->out_fd >= 0 && r->status / 100 == 2) {
        for (size_t done = 0; done < len;) {
            ssize_t w = write(r->out_fd, data + done, len - done);
            if (w <= 0)
                return 0; /* the reader went away: abort */
            done += (size_t)w;
        }
        return len;
    }
    if (r->reply->len < 64 * 1024)
        g_string_append_len(r->reply, data, (gssize)len);
    return len;
}

static size_t
on_header(char *data, size_t size, size_t n, void *p)
{
    Req *r = p;
    size_t len = size * n;
    g_autofree char *line = g_strstrip(g_strndup(data, len));
    if (g_str_has_prefix(line, "HTTP/")) {
        r->status = strtol(strchr(line, ' ') ? strchr(line, ' ') + 1 : "0", NULL, 10);
        g_clear_pointer(&r->etag, g_free);
    } else if (!g_ascii_strncasecmp(line, "etag:", 5)) {
        g_free(r->etag);
        r->etag = g_strdup(g_strstrip(line + 5));
    } else if (!g_ascii_strncasecmp(line, "content-length:", 15)) {
        r->length = g_ascii_strtoll(line + 15, NULL, 10);
    }
    return len;
}

static size_t
on_send(char *buf, size_t size, size_t n, void *p)
{
    Req *r = p;
    size_t max = size * n;
    if (r->body) {
        size_t k = MIN(max, r->body_len - (gsize)r->sent);
        memcpy(buf, r->body + r->sent, k);
        r->sent += (gint64)k;
        return k;
    }
    size_t want = (size_t)MIN((gint64)max, r->count - r->sent);
    ssize_t k = want ? pread(r->fd, buf, want, r->offset + r->sent) : 0;
    if (k < 0)
        return CURL_READFUNC_ABORT;
    r->sent += k;
    return (size_t)k;
}

/* The request's URL and the host it is signed for. */
static char *
url_of(ObjStore *s, Req *r, char **host, char **path)
{
    sigv4_store_locate(&s->where, r->key, host, path);
    return g_strdup_printf("%s://%s%s%s%s", s->where.scheme, *host, *path, *r->query ? "?" : "",
                           r->query);
}

/* One attempt of R; FALSE (and ERROR) if it got no HTTP answer. */
static gboolean
attempt(ObjStore *s, Req *r, GError **error)
{
    g_autofree char *host = NULL, *path = NULL;
    g_autofree char *url = url_of(s, r, &host, &path);
    g_autofree char *date = sigv4_amz_date(g_get_real_time() / G_USEC_PER_SEC);
    const char *hs[] = {"host",       host, "x-amz-content-sha256",    r->payload_hash,
                        "x-amz-date", date, r->range ? "range" : NULL, r->range,
                        NULL};
    Sigv4Keys k = {s->access_key, s->secret_key, s->region, "s3"};
    g_autofree char *auth =
        sigv4_authorization(&k, r->method, path, r->query, hs, r->payload_hash, date);
    struct curl_slist *headers = NULL;
    g_autofree char *h1 = g_strdup_printf("Authorization: %s", auth);
    g_autofree char *h2 = g_strdup_printf("x-amz-content-sha256: %s", r->payload_hash);
    g_autofree char *h3 = g_strdup_printf("x-amz-date: %s", date);
    g_autofree char *h4 = r->range ? g_strdup_printf("Range: %s", r->range) : NULL;
    headers = curl_slist_append(headers, h1);
    headers = curl_slist_append(headers, h2);
    headers = curl_slist_append(headers, h3);
    if (h4)
        headers = curl_slist_append(headers, h4);
    headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    /* A stalled transfer (under 1 KB/s for 30 s) is abandoned. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    gint64 upload = r->body ? (gint64)r->body_len : r->fd >= 0 ? r->count : -1;
    if (!strcmp(r->method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(r->method, "PUT")) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_send);
        curl_easy_setopt(c, CURLOPT_READDATA, r);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)MAX(upload, 0));
    } else if (!strcmp(r->method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_send);
        curl_easy_setopt(c, CURLOPT_READDATA, r);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)MAX(upload, 0));
    } else if (strcmp(r->method, "GET")) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    }
    r->status = 0;
    r->sent = 0;
    r->length = -1;
    g_string_truncate(r->reply, 0);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK || r->status == 0) {
        g_set_error(error, OBJ_ERROR, 0, "%s %s: %s", r->method, url, curl_easy_strerror(rc));
        return FALSE;
    }
    return TRUE;
}

/* R, tried again on no answer or a 5xx (the store restarting, overloaded);
 * FALSE and ERROR unless it ends in 2xx (or 404 when OK_404). */
static gboolean
request(ObjStore *s, Req *r, gboolean ok_404, GError **error)
{
    g_autoptr(GError) last = NULL;
    for (int i = 0; i < ATTEMPTS; i++) {
        if (i)
            g_usleep((gulong)(500000 << (i - 1)));
        g_clear_error(&last);
        if (r->out_fd >= 0 && i)
            break; /* a GET that wrote part of its body cannot start over */
        if (!attempt(s, r, &last))
            continue;
        if (r->status / 100 == 2 || (ok_404 && r->status == 404))
            return TRUE;
        /* An error in the body of a 200 is an S3 quirk (CompleteMultipartUpload). */
        g_set_error(&last, OBJ_ERROR, (int)r->status, "%s %s: HTTP %ld %.300s", r->method,
                    r->key ? r->key : "", r->status, r->reply->str);
        if (r->status < 500)
            break;
    }
    g_propagate_error(error, g_steal_pointer(&last));
    return FALSE;
}

static Req
req_new(const char *method, const char *key, const char *query)
{
    Req r = {.method = method,
             .key = key,
             .query = query ? query : "",
             .fd = -1,
             .out_fd = -1,
             .payload_hash = SIGV4_EMPTY_SHA256};
    r.reply = g_string_new(NULL);
    return r;
}

static void
req_clear(Req *r)
{
    g_string_free(r->reply, TRUE);
    g_free(r->etag);
}

/* The text between <TAG> and </TAG> in XML, or NULL. */
static char *
xml_value(const char *xml, const char *tag)
{
    g_autofree char *open = g_strdup_printf("<%s>", tag), *close = g_strdup_printf("</%s>", tag);
    const char *a = strstr(xml, open);
    const char *b = a ? strstr(a, close) : NULL;
    return b ? g_strndup(a + strlen(open), b - a - strlen(open)) : NULL;
}

static char *
hex_of(const guint8 *d, gsize n)
{
    char *out = g_malloc(2 * n + 1);
    for (gsize i = 0; i < n; i++)
        g_snprintf(out + 2 * i, 3, "%02x", d[i]);
    return out;
}

/* SHA-256 (hex) and MD5 (binary, 16 bytes) of COUNT bytes of FD at OFFSET;
 * the bytes also go into ALL if set. */
static gboolean
digest_range(int fd, gint64 offset, gint64 count, char **sha, guint8 md5[16], GChecksum *all)
{
    g_autoptr(GChecksum) a = g_checksum_new(G_CHECKSUM_SHA256);
    g_autoptr(GChecksum) b = g_checksum_new(G_CHECKSUM_MD5);
    guint8 buf[64 * 1024];
    for (gint64 done = 0; done < count;) {
        ssize_t n = pread(fd, buf, (size_t)MIN((gint64)sizeof buf, count - done), offset + done);
        if (n <= 0)
            return FALSE;
        g_checksum_update(a, buf, n);
        g_checksum_update(b, buf, n);
        if (all)
            g_checksum_update(all, buf, n);
        done += n;
    }
    *sha = g_strdup(g_checksum_get_string(a));
    gsize len = 16;
    g_checksum_get_digest(b, md5, &len);
    return TRUE;
}

static void
abort_upload(ObjStore *s, const char *key, const char *id)
{
    g_autofree char *enc = sigv4_uri_encode(id, FALSE);
    g_autofree char *q = g_strdup_printf("uploadId=%s", enc);
    Req r = req_new("DELETE", key, q);
    g_autoptr(GError) err = NULL;
    if (!request(s, &r, TRUE, &err))
        g_printerr("objects: could not abort upload %s of %s: %s\n", id, key, err->message);
    req_clear(&r);
}

static gboolean
s3_put(ObjStore *s, const char *file, const char *key, const char *abort_id,
       void (*on_upload_id)(const char *id, gpointer data), gpointer data, gint64 *size,
       char **etag, GError **error)
{
    if (abort_id && *abort_id)
        abort_upload(s, key, abort_id);
    int fd = g_open(file, O_RDONLY | O_CLOEXEC, 0);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        g_set_error(error, OBJ_ERROR, errno, "cannot read %s: %s", file, g_strerror(errno));
        if (fd >= 0)
            close(fd);
        return FALSE;
    }
    gint64 total = st.st_size;
    gboolean ok;
    g_autofree char *want = NULL;  /* the ETag S3 gives such an upload */
    g_autofree char *whole = NULL; /* the file's MD5, which some stores give instead */
    if (total <= s->part_size) {
        guint8 md5[16];
        g_autofree char *sha = NULL;
        ok = digest_range(fd, 0, total, &sha, md5, NULL);
        Req r = req_new("PUT", key, "");
        r.fd = fd;
        r.count = total;
        r.payload_hash = sha;
        ok = ok && request(s, &r, FALSE, error);
        want = hex_of(md5, 16);
        whole = g_strdup(want);
        req_clear(&r);
    } else {
        Req r = req_new("POST", key, "uploads=");
        ok = request(s, &r, FALSE, error);
        g_autofree char *id = ok ? xml_value(r.reply->str, "UploadId") : NULL;
        req_clear(&r);
        if (ok && !id) {
            g_set_error(error, OBJ_ERROR, 0, "no UploadId in the store's answer");
            ok = FALSE;
        }
        if (ok && on_upload_id)
            on_upload_id(id, data);
        g_autofree char *enc = id ? sigv4_uri_encode(id, FALSE) : NULL;
        GString *done = g_string_new("<CompleteMultipartUpload>");
        g_autoptr(GChecksum) md5s = g_checksum_new(G_CHECKSUM_MD5);
        g_autoptr(GChecksum) all = g_checksum_new(G_CHECKSUM_MD5);
        guint parts = 0;
        for (gint64 off = 0; ok && off < total; off += s->part_size) {
            gint64 n = MIN(s->part_size, total - off);
            guint8 md5[16];
            g_autofree char *sha = NULL;
            ok = digest_range(fd, off, n, &sha, md5, all);
            g_checksum_update(md5s, md5, 16);
            parts++;
            g_autofree char *q = g_strdup_printf("partNumber=%u&uploadId=%s", parts, enc);
            Req p = req_new("PUT", key, q);
            p.fd = fd;
            p.offset = off;
            p.count = n;
            p.payload_hash = sha;
            ok = ok && request(s, &p, FALSE, error);
            if (ok)
                g_string_append_printf(done,
                                       "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>",
                                       parts, p.etag ? p.etag : "");
            req_clear(&p);
        }
        g_string_append(done, "</CompleteMultipartUpload>");
        if (ok) {
            g_autofree char *q = g_strdup_printf("uploadId=%s", enc);
            Req c = req_new("POST", key, q);
            c.body = (const guint8 *)done->str;
            c.body_len = done->len;
            g_autofree char *sha = sigv4_sha256_hex(done->str, done->len);
            c.payload_hash = sha;
            ok = request(s, &c, FALSE, error);
            if (ok && strstr(c.reply->str, "<Error>")) {
                g_set_error(error, OBJ_ERROR, 0, "completing the upload: %.300s", c.reply->str);
                ok = FALSE;
            }
            req_clear(&c);
        }
        if (!ok && id)
            abort_upload(s, key, id);
        guint8 d[16];
        gsize dl = 16;
        g_checksum_get_digest(md5s, d, &dl);
        g_autofree char *hex = hex_of(d, 16);
        want = g_strdup_printf("%s-%u", hex, parts);
        whole = g_strdup(g_checksum_get_string(all));
        g_string_free(done, TRUE);
    }
    close(fd);
    if (!ok)
        return FALSE;
    /* Read it back: the size, and the checksum where the ETag is one. */
    Req h = req_new("HEAD", key, "");
    ok = request(s, &h, FALSE, error);
    g_autofree char *got = h.etag ? g_strdup(h.etag) : g_strdup("");
    g_strdelimit(got, "\"", ' ');
    g_strstrip(got);
    if (ok && h.length != total) {
        g_set_error(error, OBJ_ERROR, 0,
                    "the store holds %" G_GINT64_FORMAT " bytes of %" G_GINT64_FORMAT, h.length,
                    total);
        ok = FALSE;
    }
    gboolean md5_like = strlen(got) >= 32 && g_ascii_isxdigit(got[0]);
    if (ok && md5_like && g_ascii_strcasecmp(got, want) && g_ascii_strcasecmp(got, whole)) {
        g_set_error(error, OBJ_ERROR, 0, "the store's checksum %s is not the file's %s", got, want);
        ok = FALSE;
    }
    req_clear(&h);
    if (ok) {
        *size = total;
        *etag = g_steal_pointer(&want);
    }
    return ok;
}

gboolean
obj_put(ObjStore *s, const char *file, const char *key, const char *abort_id,
        void (*on_upload_id)(const char *id, gpointer data), gpointer data, gint64 *size,
        char **etag, GError **error)
{
    *etag = NULL;
    if (s->dir)
        return dir_put(s, file, key, size, etag, error);
    return s3_put(s, file, key, abort_id, on_upload_id, data, size, etag, error);
}

gboolean
obj_delete(ObjStore *s, const char *key, GError **error)
{
    if (s->dir) {
        g_autofree char *p = dir_path(s, key);
        if (g_unlink(p) != 0 && errno != ENOENT) {
            g_set_error(error, OBJ_ERROR, errno, "cannot delete %s: %s", p, g_strerror(errno));
            return FALSE;
        }
        return TRUE;
    }
    Req r = req_new("DELETE", key, "");
    gboolean ok = request(s, &r, TRUE, error);
    req_clear(&r);
    return ok;
}

static void
dir_walk(const char *root, const char *rel, GString *out)
{
    g_autofree char *path = g_build_filename(root, rel, NULL);
    g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *r = *rel ? g_strdup_printf("%s/%s", rel, name) : g_strdup(name);
        g_autofree char *full = g_build_filename(root, r, NULL);
        struct stat st;
        if (g_stat(full, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            dir_walk(root, r, out);
        else
            g_string_append_printf(out, "%s %" G_GINT64_FORMAT "\n", r, (gint64)st.st_size);
    }
}

gboolean
obj_list(ObjStore *s, const char *prefix, GString *out, GError **error)
{
    if (s->dir) {
        dir_walk(s->dir, prefix, out);
        return TRUE;
    }
    g_autofree char *marker = NULL;
    for (;;) {
        g_autofree char *full = g_strconcat(s->where.prefix, prefix, NULL);
        g_autofree char *p = sigv4_uri_encode(full, FALSE);
        g_autofree char *m = marker ? sigv4_uri_encode(marker, FALSE) : NULL;
        g_autofree char *q =
            m ? g_strdup_printf("marker=%s&prefix=%s", m, p) : g_strdup_printf("prefix=%s", p);
        Req r = req_new("GET", NULL, q);
        gboolean ok = request(s, &r, FALSE, error);
        const char *at = ok ? r.reply->str : "";
        g_clear_pointer(&marker, g_free);
        while ((at = strstr(at, "<Contents>"))) {
            g_autofree char *key = xml_value(at, "Key"), *size = xml_value(at, "Size");
            if (key)
                g_string_append_printf(out, "%s %s\n",
                                       key + strlen(s->where.prefix) *
                                                 g_str_has_prefix(key, s->where.prefix),
                                       size ? size : "0");
            g_free(marker);
            marker = g_strdup(key);
            at++;
        }
        g_autofree char *more = ok ? xml_value(r.reply->str, "IsTruncated") : NULL;
        req_clear(&r);
        if (!ok)
            return FALSE;
        if (!more || strcmp(more, "true") || !marker)
            return TRUE;
    }
}

gboolean
obj_get(ObjStore *s, const char *key, gint64 from, gint64 to, int fd, GError **error)
{
    if (s->dir) {
        g_autofree char *p = dir_path(s, key);
        int in = g_open(p, O_RDONLY | O_CLOEXEC, 0);
        struct stat st;
        if (in < 0 || fstat(in, &st) != 0) {
            g_set_error(error, OBJ_ERROR, 404, "no object %s", key);
            if (in >= 0)
                close(in);
            return FALSE;
        }
        gint64 end = to < 0 ? st.st_size - 1 : MIN(to, st.st_size - 1);
        guint8 buf[64 * 1024];
        for (gint64 at = from; at <= end;) {
            ssize_t n = pread(in, buf, (size_t)MIN((gint64)sizeof buf, end - at + 1), at);
            if (n <= 0 || write(fd, buf, n) != n)
                break;
            at += n;
        }
        close(in);
        return TRUE;
    }
    g_autofree char *range =
        to < 0 ? g_strdup_printf("bytes=%" G_GINT64_FORMAT "-", from)
               : g_strdup_printf("bytes=%" G_GINT64_FORMAT "-%" G_GINT64_FORMAT, from, to);
    Req r = req_new("GET", key, "");
    r.range = range;
    r.out_fd = fd;
    gboolean ok = request(s, &r, FALSE, error);
    req_clear(&r);
    return ok;
}
