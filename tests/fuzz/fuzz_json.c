/* Fuzz target: every handler that takes a JSON body, run in-process on the
 * real application (storage, auth, events, consultations).  The first byte
 * picks the handler, the caller and the path parameter; the rest is the
 * body.  fuzz_request() asserts one reply per request and no server error
 * but 503; the handlers' own checks must turn anything else into a 4xx. */
#include <stdint.h>

#include "api/accounts.h"
#include "api/consult.h"
#include "fuzz_app.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    SigHandler handler;
    const char *method, *path;
    FuzzUser user, param; /* param: whose id is the path parameter */
} Call;

static const Call calls[] = {
    {sig_h_login, "POST", "/api/login", FUZZ_NOBODY, FUZZ_NOBODY},
    {sig_h_users_create, "POST", "/api/users", FUZZ_ADMIN, FUZZ_NOBODY},
    {sig_h_teacher_profile, "PUT", "/api/teachers/{id}/profile", FUZZ_TEACHER1, FUZZ_TEACHER1},
    {sig_h_teacher_profile, "PUT", "/api/teachers/{id}/profile", FUZZ_TEACHER1, FUZZ_TEACHER2},
    {sig_h_teacher_profile, "PUT", "/api/teachers/{id}/profile", FUZZ_ADMIN, FUZZ_TEACHER2},
    {sig_h_teacher_presence, "PUT", "/api/teachers/{id}/presence", FUZZ_TEACHER1, FUZZ_TEACHER1},
    {sig_h_teacher_presence, "PUT", "/api/teachers/{id}/presence", FUZZ_TEACHER2, FUZZ_TEACHER1},
    {sig_h_consultation_create, "POST", "/api/consultations", FUZZ_STUDENT1, FUZZ_NOBODY},
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const Call *c = &calls[data[0] % G_N_ELEMENTS(calls)];
    char id[32];
    char *param = NULL;
    if (c->param) {
        /* The high bit swaps in a parameter that is not a valid id. */
        if (data[0] & 0x80)
            param = (char *)"0x1";
        else {
            g_snprintf(id, sizeof id, "%" G_GINT64_FORMAT, fuzz_user_id(c->param));
            param = id;
        }
    }
    fuzz_request(c->handler, c->method, c->path, &param, param ? 1 : 0, c->user, data + 1,
                 size - 1);
    fuzz_settle();
    return 0;
}
