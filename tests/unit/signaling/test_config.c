/* Unit tests for signaling/core/config.c: precedence and validation. */
#include <glib/gstdio.h>

#include "core/config.h"

static SigConfig *
load(const char *const *args, GError **error)
{
    g_autoptr(GPtrArray) a = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(a, g_strdup("consultd"));
    for (guint i = 0; args && args[i]; i++)
        g_ptr_array_add(a, g_strdup(args[i]));
    g_ptr_array_add(a, NULL);
    int argc = (int)a->len - 1;
    char **argv = (char **)a->pdata;
    /* GOption rearranges argv; keep our own copy to free. */
    g_autofree char **copy = g_memdup2(argv, a->len * sizeof(char *));
    return sig_config_load(&argc, &copy, error);
}

static void
test_defaults(void)
{
    g_unsetenv("CONSULTD_LISTEN");
    g_unsetenv("CONSULTD_MAX_BODY");
    g_autoptr(GError) err = NULL;
    g_autoptr(SigConfig) c = load(NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(c->listen, ==, "127.0.0.1:8080");
    g_assert_cmpstr(c->data_dir, ==, "./data");
    g_assert_cmpint(c->max_body, ==, 1048576);
    g_assert_false(c->demo);
}

static void
test_precedence(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_dir_make_tmp("cfg-XXXXXX", NULL);
    g_autofree char *file = g_build_filename(dir, "c.conf", NULL);
    g_assert_true(g_file_set_contents(
        file, "[consultd]\nlisten=10.0.0.1:1\nmax-body=2000\nconn-limit=7\ndemo=true\n", -1, NULL));
    g_setenv("CONSULTD_MAX_BODY", "3000", TRUE);
    g_setenv("CONSULTD_LISTEN", "127.0.0.2:2", TRUE);
    const char *args[] = {"--config", file, "--listen", "127.0.0.3:3", NULL};
    g_autoptr(SigConfig) c = load(args, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(c->listen, ==, "127.0.0.3:3"); /* flag > env > file */
    g_assert_cmpint(c->max_body, ==, 3000);        /* env > file */
    g_assert_cmpint(c->conn_limit, ==, 7);         /* file > default */
    g_assert_true(c->demo);
    g_unsetenv("CONSULTD_MAX_BODY");
    g_unsetenv("CONSULTD_LISTEN");
    g_unlink(file);
    g_rmdir(dir);
}

static void
test_bad_values(void)
{
    g_autoptr(GError) err = NULL;
    const char *a1[] = {"--max-body", "12abc", NULL};
    g_assert_null(load(a1, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    const char *a2[] = {"--log-level", "loud", NULL};
    g_assert_null(load(a2, &err));
    g_clear_error(&err);
    const char *a3[] = {"--conn-timeout", "0", NULL};
    g_assert_null(load(a3, &err));
    g_clear_error(&err);
    g_setenv("CONSULTD_DEMO", "maybe", TRUE);
    g_assert_null(load(NULL, &err));
    g_clear_error(&err);
    g_unsetenv("CONSULTD_DEMO");
    const char *a4[] = {"--config", "/nonexistent/consultd.conf", NULL};
    g_assert_null(load(a4, &err));
    g_clear_error(&err);
}

static void
test_bool_flags(void)
{
    g_autoptr(GError) err = NULL;
    const char *a1[] = {"--demo", "--record=false", NULL};
    g_autoptr(SigConfig) c = load(a1, &err);
    g_assert_no_error(err);
    g_assert_true(c->demo);
    g_assert_false(c->record);
    const char *a2[] = {"--record=perhaps", NULL};
    g_assert_null(load(a2, &err));
    g_assert_nonnull(err);
}

static void
test_public_url_trailing_slash(void)
{
    g_autoptr(GError) err = NULL;
    const char *a[] = {"--public-url", "https://school.example/consult//", NULL};
    g_autoptr(SigConfig) c = load(a, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(c->public_url, ==, "https://school.example/consult");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/config/defaults", test_defaults);
    g_test_add_func("/config/precedence", test_precedence);
    g_test_add_func("/config/bad-values", test_bad_values);
    g_test_add_func("/config/public-url-trailing-slash", test_public_url_trailing_slash);
    g_test_add_func("/config/bool-flags", test_bool_flags);
    return g_test_run();
}
