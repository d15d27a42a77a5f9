/* sigv4.h - AWS Signature Version 4 for S3-compatible object storage.
 *
 * Both sides sign with it: the uploader (recorder/objects.c) signs its
 * requests in the Authorization header, with the payload's SHA-256 (so
 * the store checks the bytes it receives); the signaling side presigns
 * the short-lived URLs a replay is redirected to.  GLib's HMAC and SHA-256
 * only; checked against AWS's published examples (tests/unit/common/
 * test_sigv4.c).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
    const char *access_key, *secret_key;
    const char *region;  /* "us-east-1" */
    const char *service; /* "s3" */
} Sigv4Keys;

/* The SHA-256 of an empty payload, hex. */
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* V URI-encoded as SigV4 wants: unreserved characters (A-Z a-z 0-9 - _ .
 * ~) kept, every other byte %XX (upper case); '/' kept if KEEP_SLASH. */
char *sigv4_uri_encode(const char *v, gboolean keep_slash);

/* The value of the Authorization header for a request: METHOD, PATH (its
 * canonical form: already encoded), QUERY (canonical: encoded pairs sorted
 * by name, "" if none), HEADERS (a NULL-terminated list of name, value,
 * name, value...; every header to sign, host and x-amz-date among them),
 * PAYLOAD_HASH (hex SHA-256 of the body), AMZ_DATE (YYYYMMDDTHHMMSSZ). */
char *sigv4_authorization(const Sigv4Keys *k, const char *method, const char *path,
                          const char *query, const char *const *headers, const char *payload_hash,
                          const char *amz_date);

/* The query string (after '?') of a presigned URL for METHOD on HOST's
 * PATH (encoded), valid EXPIRES seconds from AMZ_DATE; signs host only,
 * with an unsigned payload.  EXTRA: "" or canonical query pairs to sign too
 * (e.g. "response-content-type=video%2Fwebm"), sorted, whose names sort
 * after the X-Amz- ones (lower case does). */
char *sigv4_presign_query(const Sigv4Keys *k, const char *method, const char *host,
                          const char *path, const char *extra, const char *amz_date, guint expires);

/* Where an s3:// store is, as both sides reach it (the uploader its
 * requests, the main process its presigned URLs). */
typedef struct {
    char *bucket, *prefix;    /* prefix "" or "a/b/" */
    char *scheme, *authority; /* of the endpoint: "https", "host[:port]" */
    gboolean virtual_host;    /* bucket.authority/key, else authority/bucket/key */
} Sigv4Store;
/* WHERE is s3://bucket[/prefix]; ENDPOINT http(s)://host[:port] or "" for
 * AWS's of REGION; ADDRESSING path, virtual, or auto (virtual on AWS, path
 * with an endpoint).  FALSE if WHERE or ENDPOINT is not of that form. */
gboolean sigv4_store_parse(Sigv4Store *st, const char *where, const char *endpoint,
                           const char *region, const char *addressing);
void sigv4_store_clear(Sigv4Store *st);
/* The host and the canonical (encoded) path of KEY under the prefix (KEY
 * NULL: the bucket itself); both newly allocated. */
void sigv4_store_locate(const Sigv4Store *st, const char *key, char **host, char **path);

/* T (seconds since the epoch) as AMZ_DATE wants it. */
char *sigv4_amz_date(gint64 t);

/* Hex SHA-256 of DATA. */
char *sigv4_sha256_hex(const void *data, gsize len);

G_END_DECLS
