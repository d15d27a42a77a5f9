/* Fuzz target: path matching against every route of the real table, and
 * each GET route that matches run in-process (fuzz_app.h) as an admin and
 * as a student, so that path parameters reach the handlers: any bytes in
 * them must give a 4xx, never a 5xx (a 500 for invalid UTF-8 in an error
 * message was found this way). */
#include <stdint.h>
#include <string.h>

#include "fuzz_app.h"
#include "api/routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *path = g_strndup((const char *)data, size);
    guint n_routes;
    const SigRoute *routes = sig_routes(&n_routes);
    for (guint i = 0; i < n_routes; i++) {
        char *params[4] = {NULL};
        guint n = 99;
        gboolean ok = sig_route_match(routes[i].pattern, path, params, 4, &n);
        g_assert(ok ? n <= 4 : n == 0);
        for (guint k = 0; k < 4; k++) {
            g_assert(k < n || params[k] == NULL);
            if (params[k])
                g_assert(*params[k] && !strchr(params[k], '/'));
        }
        if (ok && !strcmp(routes[i].method, "GET") && !(routes[i].flags & SIG_ROUTE_STREAM)) {
            fuzz_request(routes[i].handler, "GET", path, params, n, FUZZ_ADMIN, "", 0);
            fuzz_request(routes[i].handler, "GET", path, params, n, FUZZ_STUDENT1, "", 0);
        }
        for (guint k = 0; k < 4; k++)
            g_free(params[k]);
    }
    g_free(path);
    return 0;
}
