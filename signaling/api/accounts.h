/* auth.h - passwords, login sessions, the users API.
 *
 * Passwords are hashed with libsodium's crypto_pwhash_str (argon2id,
 * interactive limits: about 64 MiB and tens of milliseconds each).  That is
 * far too slow for the main loop, so logins and user creation hash on a small
 * thread pool and come back to the loop with g_main_context_invoke(); the
 * HTTP connection is suspended meanwhile.
 */
#pragma once

#include "http/http.h"

SigAuth *sig_auth_new(SigApp *app);
void sig_auth_free(SigAuth *a); /* NULL-safe; waits for running hash jobs */
/* Runs every queued hash job and answers its request; logins after it get
 * 503.  For shutdown, before HTTP stops.  NULL-safe, idempotent. */
void sig_auth_drain(SigAuth *a);

/* Synchronous hashing for the CLI and the demo seed.  Returns a newly
 * allocated hash string, or NULL if libsodium could not allocate. */
char *sig_auth_hash_password(const char *password);
gboolean sig_auth_verify_password(const char *hash, const char *password);
/* Hex SHA-256 of TOKEN (how sessions are stored). */
char *sig_auth_token_hash(const char *token);

/* Finds the session from "Authorization: Bearer" or the session cookie and
 * sets r->user and r->token_hash.  FALSE if there is none or it is invalid;
 * FALSE with ERROR set if the database could not be read (a 503, not a
 * 401: the client must not drop a session that may be fine). */
gboolean sig_auth_identify(SigReq *r, GError **error);

/* Seeds the demo accounts if they do not exist yet and prints them. */
gboolean sig_auth_seed_demo(SigApp *app, GError **error);

/* A user as the API shows it; new reference. */
json_t *sig_user_json(const StoreUser *u);

/* Route handlers. */
void sig_h_login(SigReq *r);
void sig_h_logout(SigReq *r);
void sig_h_me(SigReq *r);
void sig_h_users_list(SigReq *r);
void sig_h_users_create(SigReq *r);
void sig_h_users_delete(SigReq *r);
void sig_h_me_password(SigReq *r);
void sig_h_user_password(SigReq *r);

/* Validation shared with the CLI: username is 1-64 of [a-z0-9._-]. */
gboolean sig_username_valid(const char *username);
#define SIG_PASSWORD_MIN 8
#define SIG_PASSWORD_MAX 1024
