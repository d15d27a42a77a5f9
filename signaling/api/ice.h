/* ice.h - the ICE servers clients are told about: the STUN server and TURN
 * servers with short-lived credentials minted per user from the TURN
 * server's shared secret (the "TURN REST API" scheme coturn implements as
 * use-auth-secret: username "<expiry>:<user id>", password
 * base64(HMAC-SHA1(secret, username))).  No long-lived TURN password is
 * ever handed out. */
#pragma once

#include "http/http.h"

SigIce *sig_ice_new(SigApp *app);
void sig_ice_free(SigIce *ice); /* NULL-safe */

/* GET /api/ice-servers: {"ice_servers": [RTCIceServer...], "ttl": s};
 * TURN only for participants of a requested or live consultation. */
void sig_h_ice_servers(SigReq *r);
/* Adds one Link: <url>; rel="ice-server" header per server (RFC 9725
 * section 4.6) to a WHIP/WHEP reply for R's user. */
void sig_ice_link_headers(SigReq *r);
/* The REST credential for USER_ID valid until EXPIRES (unix seconds);
 * exposed for tests. */
void sig_ice_turn_credential(const char *secret, gint64 user_id, gint64 expires, char **username,
                             char **password);
