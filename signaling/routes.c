/* routes.c - the route table: every HTTP endpoint of the main process.
 *
 * Order matters only where two patterns match one path; the first wins.
 * Roles deny by default: a route names the roles it admits, and only
 * SIG_ROUTE_PUBLIC ones are reachable without a login.  docs/api.md has the
 * same table in prose; tests/blackbox/test_api_roles.py checks them against
 * each other.
 */
#include "routes.h"

#include "auth.h"
#include "ops.h"

#define ANY STORE_ROLE_ANY
#define ADMIN STORE_ROLE_ADMIN
#define PUB SIG_ROUTE_PUBLIC

static const SigRoute routes[] = {
    {"GET", "/healthz", sig_h_healthz, 0, PUB | SIG_ROUTE_NO_LOG},
    {"GET", "/readyz", sig_h_readyz, 0, PUB | SIG_ROUTE_NO_LOG},
    {"GET", "/metrics", sig_h_metrics, 0, PUB | SIG_ROUTE_NO_LOG},

    {"POST", "/api/login", sig_h_login, 0, PUB},
    {"POST", "/api/logout", sig_h_logout, ANY, 0},
    {"GET", "/api/me", sig_h_me, ANY, 0},

    {"GET", "/api/users", sig_h_users_list, ADMIN, 0},
    {"POST", "/api/users", sig_h_users_create, ADMIN, 0},
    {"DELETE", "/api/users/{id}", sig_h_users_delete, ADMIN, 0},
};

const SigRoute *
sig_routes(guint *n)
{
    *n = G_N_ELEMENTS(routes);
    return routes;
}
