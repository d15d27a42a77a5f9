/* Unit tests for signaling/api/accounts.c and core/ratelimit.c. */
#include <sodium.h>
#include <string.h>

#include "api/accounts.h"
#include "core/ratelimit.h"

static void
test_password_hash_roundtrip(void)
{
    g_autofree char *h = sig_auth_hash_password("correct horse");
    g_assert_nonnull(h);
    g_assert_true(g_str_has_prefix(h, "$argon2id$"));
    g_assert_null(strstr(h, "correct horse"));
    g_assert_true(sig_auth_verify_password(h, "correct horse"));
    g_assert_false(sig_auth_verify_password(h, "correct horsE"));
    g_assert_false(sig_auth_verify_password(h, ""));
    g_autofree char *h2 = sig_auth_hash_password("correct horse");
    g_assert_cmpstr(h, !=, h2); /* salted */
    g_assert_false(sig_auth_verify_password("garbage", "x"));
}

static void
test_token_hash(void)
{
    g_autofree char *a = sig_auth_token_hash("abc");
    g_assert_cmpstr(a, ==, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void
test_username_rules(void)
{
    g_assert_true(sig_username_valid("student1"));
    g_assert_true(sig_username_valid("a.b_c-d"));
    g_assert_false(sig_username_valid(""));
    g_assert_false(sig_username_valid("Upper"));
    g_assert_false(sig_username_valid("with space"));
    g_assert_false(sig_username_valid("../etc"));
    g_autofree char *long_name = g_strnfill(65, 'a');
    g_assert_false(sig_username_valid(long_name));
    long_name[64] = '\0';
    g_assert_true(sig_username_valid(long_name));
}

static void
test_limiter(void)
{
    SigLimiter *l = sig_limiter_new(3, 60);
    g_assert_cmpuint(sig_limiter_hit(l, "ip1"), ==, 0);
    g_assert_cmpuint(sig_limiter_hit(l, "ip1"), ==, 0);
    g_assert_cmpuint(sig_limiter_peek(l, "ip1"), ==, 0);
    g_assert_cmpuint(sig_limiter_hit(l, "ip1"), ==, 0);
    guint wait = sig_limiter_hit(l, "ip1");
    g_assert_cmpuint(wait, >, 0);
    g_assert_cmpuint(wait, <=, 60);
    g_assert_cmpuint(sig_limiter_peek(l, "ip1"), >, 0);
    g_assert_cmpuint(sig_limiter_hit(l, "ip2"), ==, 0); /* keys are separate */
    sig_limiter_reset(l, "ip1");
    g_assert_cmpuint(sig_limiter_peek(l, "ip1"), ==, 0);
    sig_limiter_free(l);
    sig_limiter_free(NULL);
}

/* A flood of new keys evicts the oldest, one at a time: it never wipes the
 * lockouts of the others (it used to clear every key at 100,000). */
static void
test_limiter_evicts_oldest(void)
{
    SigLimiter *l = sig_limiter_new(1, 60);
    sig_limiter_set_max_keys(l, 100);
    g_assert_cmpuint(sig_limiter_hit(l, "victim"), ==, 0);
    g_assert_cmpuint(sig_limiter_hit(l, "locked"), ==, 0);
    for (int i = 0; i < 98; i++) {
        char k[16];
        g_snprintf(k, sizeof k, "k%d", i);
        sig_limiter_hit(l, k);
    }
    g_assert_cmpuint(sig_limiter_size(l), ==, 100);
    g_assert_cmpuint(sig_limiter_peek(l, "locked"), >, 0);
    sig_limiter_hit(l, "new-one"); /* evicts "victim", the oldest, only */
    g_assert_cmpuint(sig_limiter_size(l), ==, 100);
    g_assert_cmpuint(sig_limiter_peek(l, "victim"), ==, 0);
    g_assert_cmpuint(sig_limiter_peek(l, "locked"), >, 0);
    sig_limiter_free(l);
}

static void
test_backoff(void)
{
    SigBackoffRule rule = {3, 10, 60, 900};
    SigLimiter *l = sig_limiter_new(rule.max, rule.window_s);
    for (int i = 0; i < 3; i++) {
        g_assert_cmpuint(sig_backoff_wait(l, &rule, "u\na"), ==, 0);
        sig_limiter_hit(l, "u\na");
    }
    g_assert_cmpuint(sig_backoff_wait(l, &rule, "u\na"), ==, 0); /* 3 free */
    sig_limiter_hit(l, "u\na");
    guint w = sig_backoff_wait(l, &rule, "u\na"); /* the 4th: 1 s (0 if a second ticked) */
    g_assert_cmpuint(w, <=, 1);
    for (int i = 0; i < 6; i++)
        sig_limiter_hit(l, "u\na");
    g_assert_cmpuint(sig_backoff_wait(l, &rule, "u\na"), >, 60); /* 10: locked */
    g_assert_cmpuint(sig_backoff_wait(l, &rule, "u\nb"), ==, 0); /* another address */
    sig_limiter_free(l);
}

static void
test_json_time(void)
{
    json_t *t = sig_json_time(1700000000123);
    g_assert_cmpstr(json_string_value(t), ==, "2023-11-14T22:13:20.123Z");
    json_decref(t);
    t = sig_json_time(0);
    g_assert_true(json_is_null(t));
    json_decref(t);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_cmpint(sodium_init(), >=, 0);
    g_test_add_func("/auth/password-hash-roundtrip", test_password_hash_roundtrip);
    g_test_add_func("/auth/token-hash", test_token_hash);
    g_test_add_func("/auth/username-rules", test_username_rules);
    g_test_add_func("/auth/limiter", test_limiter);
    g_test_add_func("/auth/limiter-evicts-oldest", test_limiter_evicts_oldest);
    g_test_add_func("/auth/backoff", test_backoff);
    g_test_add_func("/auth/json-time", test_json_time);
    return g_test_run();
}
