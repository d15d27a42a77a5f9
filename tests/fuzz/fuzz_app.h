/* fuzz_app.h - the main process's application, in-process, for fuzz targets
 * that go through real handlers: a temporary data dir, the demo accounts,
 * no HTTP listener and no media workers.  Requests are SigReq values with
 * no connection behind them; a handler that suspends (password hashing)
 * is waited for by iterating the main context. */
#pragma once

#include "core/app.h"
#include "http/http.h"

typedef enum {
    FUZZ_NOBODY,
    FUZZ_ADMIN,
    FUZZ_TEACHER1,
    FUZZ_TEACHER2,
    FUZZ_STUDENT1,
    FUZZ_N_USERS
} FuzzUser;

SigApp *fuzz_app(void); /* made on first call, kept for the process */
gint64 fuzz_user_id(FuzzUser u);

/* Runs HANDLER for METHOD PATH with N path parameters PARAMS as USER with
 * BODY; returns the reply's status after asserting that exactly one reply
 * was made and that it is not a server error other than 503. */
unsigned fuzz_request(SigHandler handler, const char *method, const char *path, char *const *params,
                      guint n, FuzzUser user, const void *body, gsize len);
/* Lets idle work (the events dispatcher) run. */
void fuzz_settle(void);
