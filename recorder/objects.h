/* objects.h - the recording store: where finalized recordings go so that
 * any node can serve them (docs/recording.md, "The recording store").
 *
 * Two kinds:
 *   dir:/path            a directory every node mounts (NFS and the like):
 *                        a copy, fsynced, renamed into place, read back;
 *   s3://bucket/prefix   S3-compatible object storage over libcurl, each
 *                        request signed with SigV4 (common/sigv4.h) and the
 *                        payload's SHA-256, so the store checks the bytes;
 *                        files over the part size go up in parts
 *                        (multipart upload), each part retried.
 * An upload is verified before it counts: its size (and, where the store
 * gives an MD5 ETag, that checksum) read back from the store.
 *
 * It runs in its own short-lived process, `consultd-objects` (the main
 * process spawns one per upload or deletion, as it spawns the repairs), so
 * a slow or hung store never blocks the main loop.  The configuration,
 * secrets included, comes through the environment (ObjConfig), never the
 * command line.  Never includes libmicrohttpd or jansson.
 */
#pragma once

#include <glib.h>

typedef struct ObjStore ObjStore;

/* From the environment: CONSULTD_RECORDINGS_STORE (dir:/path or
 * s3://bucket/prefix), CONSULTD_S3_ENDPOINT (default the AWS endpoint of
 * the region), CONSULTD_S3_REGION (us-east-1), CONSULTD_S3_ACCESS_KEY,
 * CONSULTD_S3_SECRET_KEY, CONSULTD_S3_ADDRESSING (path or virtual) and
 * CONSULTD_S3_PART_SIZE (bytes).  NULL and ERROR if it is unusable. */
ObjStore *obj_store_from_env(GError **error);
void obj_store_free(ObjStore *s);

/* Uploads FILE as KEY (relative to the store's prefix).  A multipart
 * upload announces its id through ON_UPLOAD_ID first (so that a later run
 * can abort it if this one dies); ABORT_ID, if set, is such an id of an
 * earlier run, aborted first.  On success sets *SIZE and *ETAG (caller
 * frees) after reading them back from the store. */
gboolean obj_put(ObjStore *s, const char *file, const char *key, const char *abort_id,
                 void (*on_upload_id)(const char *id, gpointer data), gpointer data, gint64 *size,
                 char **etag, GError **error);
/* Deletes KEY; one that is not there is no error. */
gboolean obj_delete(ObjStore *s, const char *key, GError **error);
/* The keys under PREFIX (relative) with their sizes, "key size" per line
 * on OUT. */
gboolean obj_list(ObjStore *s, const char *prefix, GString *out, GError **error);
/* Writes KEY's bytes FROM..TO (inclusive; TO < 0: to the end) to FD
 * (the proxy mode of serving: the main process streams them on). */
gboolean obj_get(ObjStore *s, const char *key, gint64 from, gint64 to, int fd, GError **error);
