/* routes.c - the route table: every HTTP endpoint of the main process.
 *
 * Order matters only where two patterns match one path; the first wins.
 * Roles deny by default: a route names the roles it admits, and only
 * SIG_ROUTE_PUBLIC ones are reachable without a login.  docs/api.md has the
 * same table in prose; tests/blackbox/test_api_roles.py checks them against
 * each other.
 */
#include "api/routes.h"

#include "api/accounts.h"
#include "api/consult.h"
#include "api/ice.h"
#include "api/ops.h"
#include "api/recordings.h"
#include "api/stream.h"
#include "api/web.h"
#include "api/whip.h"

#define ANY STORE_ROLE_ANY
#define ADMIN STORE_ROLE_ADMIN
#define PUB SIG_ROUTE_PUBLIC
#define TEACHER STORE_ROLE_TEACHER
#define STUDENT STORE_ROLE_STUDENT

static const SigRoute routes[] = {
    {"GET", "/", sig_h_web_index, 0, PUB},
    {"GET", "/static/{file}", sig_h_web_static, 0, PUB},
    {"GET", "/healthz", sig_h_healthz, 0, PUB | SIG_ROUTE_NO_LOG},
    {"GET", "/readyz", sig_h_readyz, 0, PUB | SIG_ROUTE_NO_LOG},
    {"GET", "/metrics", sig_h_metrics, 0, PUB | SIG_ROUTE_NO_LOG},

    {"POST", "/api/login", sig_h_login, 0, PUB},
    {"POST", "/api/logout", sig_h_logout, ANY, 0},
    {"GET", "/api/me", sig_h_me, ANY, 0},
    {"PUT", "/api/me/password", sig_h_me_password, ANY, 0},
    {"GET", "/api/ice-servers", sig_h_ice_servers, ANY, 0},

    {"GET", "/api/users", sig_h_users_list, ADMIN, 0},
    {"POST", "/api/users", sig_h_users_create, ADMIN, 0},
    {"DELETE", "/api/users/{id}", sig_h_users_delete, ADMIN, 0},
    {"POST", "/api/users/{id}/password", sig_h_user_password, ADMIN, 0},

    {"GET", "/api/teachers", sig_h_teachers_list, ANY, 0},
    {"GET", "/api/teachers/{id}", sig_h_teacher_get, ANY, 0},
    {"PUT", "/api/teachers/{id}/profile", sig_h_teacher_profile, TEACHER | ADMIN, 0},
    {"PUT", "/api/teachers/{id}/presence", sig_h_teacher_presence, TEACHER, 0},
    {"POST", "/api/teachers/{id}/favorite", sig_h_favorite_add, STUDENT, 0},
    {"DELETE", "/api/teachers/{id}/favorite", sig_h_favorite_remove, STUDENT, 0},
    {"GET", "/api/teachers/{id}/line", sig_h_line_get, ANY, 0},
    {"POST", "/api/teachers/{id}/line", sig_h_line_join, STUDENT, 0},
    {"DELETE", "/api/teachers/{id}/line", sig_h_line_leave, STUDENT, 0},
    {"PUT", "/api/teachers/{id}/line", sig_h_line_set, TEACHER, 0},

    {"POST", "/api/consultations", sig_h_consultation_create, STUDENT, 0},
    {"GET", "/api/consultations", sig_h_consultations_list, TEACHER | ADMIN, 0},
    {"GET", "/api/consultations/{id}", sig_h_consultation_get, ANY, 0},
    {"POST", "/api/consultations/{id}/accept", sig_h_consultation_accept, TEACHER, 0},
    {"POST", "/api/consultations/{id}/decline", sig_h_consultation_decline, TEACHER, 0},
    {"POST", "/api/consultations/{id}/cancel", sig_h_consultation_cancel, STUDENT, 0},
    {"POST", "/api/consultations/{id}/end", sig_h_consultation_end, TEACHER | ADMIN, 0},

    {"GET", "/api/consultations/{id}/messages", sig_h_messages_list, ANY, 0},
    {"POST", "/api/consultations/{id}/messages", sig_h_message_create, TEACHER | STUDENT | ADMIN,
     0},
    {"GET", "/api/consultations/{id}/recordings", sig_h_recordings_list, ANY, 0},
    {"GET", "/recordings/{id}/{file}", sig_h_recording_file, ANY, 0},

    {"GET", "/api/mypage", sig_h_mypage, STUDENT, 0},
    {"GET", "/api/events", sig_h_events, ANY, SIG_ROUTE_STREAM},
    {"GET", "/api/admin/webhook-deliveries", sig_h_webhook_deliveries, ADMIN, 0},
    {"GET", "/api/admin/media-workers", sig_h_media_workers, ADMIN, 0},
    {"GET", "/api/admin/nodes", sig_h_admin_nodes, ADMIN, 0},
    {"POST", "/api/admin/nodes/{id}/drain", sig_h_admin_node_drain, ADMIN, 0},
    {"GET", "/api/admin/recordings", sig_h_admin_recordings, ADMIN, 0},
    {"POST", "/api/admin/recordings/{id}/write-off", sig_h_admin_recording_write_off, ADMIN, 0},
    {"POST", "/api/admin/retention/run", sig_h_retention_run, ADMIN, 0},

    {"POST", "/whip/consultations/{id}", sig_h_whip_post, TEACHER | STUDENT, 0},
    {"OPTIONS", "/whip/consultations/{id}", sig_h_whip_options, 0, PUB},
    {"PATCH", "/whip/consultations/{id}/sessions/{sid}", sig_h_media_session_patch,
     TEACHER | STUDENT, 0},
    {"DELETE", "/whip/consultations/{id}/sessions/{sid}", sig_h_media_session_delete,
     TEACHER | STUDENT, 0},
    {"POST", "/whep/consultations/{id}", sig_h_whep_post, TEACHER | STUDENT, 0},
    {"OPTIONS", "/whep/consultations/{id}", sig_h_whip_options, 0, PUB},
    {"PATCH", "/whep/consultations/{id}/sessions/{sid}", sig_h_media_session_patch,
     TEACHER | STUDENT, 0},
    {"DELETE", "/whep/consultations/{id}/sessions/{sid}", sig_h_media_session_delete,
     TEACHER | STUDENT, 0},
};

const SigRoute *
sig_routes(guint *n)
{
    *n = G_N_ELEMENTS(routes);
    return routes;
}

/* The metrics listener's table (metrics-listen). */
static const SigRoute metrics_routes[] = {
    {"GET", "/metrics", sig_h_metrics_private, 0, PUB | SIG_ROUTE_NO_LOG},
    {"GET", "/healthz", sig_h_healthz, 0, PUB | SIG_ROUTE_NO_LOG},
};

const SigRoute *
sig_metrics_routes(guint *n)
{
    *n = G_N_ELEMENTS(metrics_routes);
    return metrics_routes;
}
