/* consultd-objects: the recording store's client, one command a run (the
 * main process spawns it; objects.h says why).
 *
 *   consultd-objects put FILE KEY [ABORT-UPLOAD-ID]
 *       -> "upload-id ID" (a multipart upload, before its parts),
 *          then "ok SIZE ETAG"
 *   consultd-objects delete KEY           -> "ok"
 *   consultd-objects list [PREFIX]        -> "KEY SIZE" per object
 *   consultd-objects get KEY FROM [TO]    -> the bytes, on stdout
 * A failure prints "error MESSAGE" on stdout and exits 1; the store comes
 * from the environment (objects.h), its secrets never on the command line.
 */
#include <curl/curl.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "objects.h"

static void
announce(const char *id, gpointer data)
{
    printf("upload-id %s\n", id);
    fflush(stdout);
}

static int
fail(GError *err)
{
    g_autofree char *msg = g_strdup(err ? err->message : "failed");
    g_strdelimit(msg, "\n\r", ' ');
    printf("error %s\n", msg);
    return 1;
}

int
main(int argc, char **argv)
{
    setlocale(LC_ALL, "C");
    if (argc < 2) {
        fprintf(stderr, "usage: consultd-objects put FILE KEY [ABORT-ID] | delete KEY |"
                        " list [PREFIX] | get KEY FROM [TO]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_autoptr(GError) err = NULL;
    ObjStore *s = obj_store_from_env(&err);
    if (!s)
        return fail(err);
    const char *cmd = argv[1];
    int rc = 2;
    if (!strcmp(cmd, "put") && argc >= 4) {
        gint64 size = 0;
        g_autofree char *etag = NULL;
        rc = obj_put(s, argv[2], argv[3], argc > 4 ? argv[4] : NULL, announce, NULL, &size, &etag,
                     &err)
                 ? (printf("ok %" G_GINT64_FORMAT " %s\n", size, etag), 0)
                 : fail(err);
    } else if (!strcmp(cmd, "delete") && argc == 3) {
        rc = obj_delete(s, argv[2], &err) ? (printf("ok\n"), 0) : fail(err);
    } else if (!strcmp(cmd, "list") && argc <= 3) {
        GString *out = g_string_new(NULL);
        rc = obj_list(s, argc == 3 ? argv[2] : "", out, &err) ? (fputs(out->str, stdout), 0)
                                                              : fail(err);
        g_string_free(out, TRUE);
    } else if (!strcmp(cmd, "get") && argc >= 4) {
        gint64 from = g_ascii_strtoll(argv[3], NULL, 10);
        gint64 to = argc > 4 ? g_ascii_strtoll(argv[4], NULL, 10) : -1;
        fflush(stdout);
        rc = obj_get(s, argv[2], from, to, STDOUT_FILENO, &err) ? 0 : 1;
        if (rc)
            fprintf(stderr, "consultd-objects: %s\n", err->message);
    } else {
        fprintf(stderr, "consultd-objects: bad arguments\n");
    }
    fflush(stdout);
    obj_store_free(s);
    curl_global_cleanup();
    return rc;
}
