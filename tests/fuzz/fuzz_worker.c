/* Fuzz target: packets on the worker channel as the main process reads
 * them (media_msg_decode, then the supervisor's handling of answer, error,
 * joined, left, recording, stats and ready reports).  A media worker is a
 * separate, less trusted process: whatever it sends must not crash
 * consultd, and a recording report must never name a file outside its
 * consultation's directory (storage refuses names that are not plain). */
#include <stdint.h>
#include <string.h>

#include "api/consult.h"
#include "fuzz_app.h"
#include "workers/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean ready;
    SigApp *app = fuzz_app();
    if (!ready) {
        /* Consultation 1, live, so that reports about it reach storage. */
        static const char online[] = "{\"status\":\"online\"}";
        char *tid = g_strdup_printf("%" G_GINT64_FORMAT, fuzz_user_id(FUZZ_TEACHER1));
        char *req = g_strdup_printf("{\"teacher_id\":%s}", tid);
        g_assert(fuzz_request(sig_h_teacher_presence, "PUT", "/", &tid, 1, FUZZ_TEACHER1, online,
                              sizeof online - 1) == 200);
        g_assert(fuzz_request(sig_h_consultation_create, "POST", "/", NULL, 0, FUZZ_STUDENT1, req,
                              strlen(req)) == 201);
        char *one = (char *)"1";
        g_assert(fuzz_request(sig_h_consultation_accept, "POST", "/", &one, 1, FUZZ_TEACHER1, "",
                              0) == 200);
        g_free(tid);
        g_free(req);
        ready = TRUE;
    }
    sig_media_feed(app, data, size);
    fuzz_settle();
    return 0;
}
