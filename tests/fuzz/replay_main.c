/* replay_main.c - runs a fuzz target over files (or directories of files)
 * without libFuzzer: how the normal test run replays the seed corpora and
 * every crash input ever found.  Prints TAP: one test for the whole corpus
 * (an input that crashes takes the process, and the test, down with it). */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
collect(const char *path, GPtrArray *out)
{
    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
        const char *n;
        while (d && (n = g_dir_read_name(d))) {
            g_autofree char *child = g_build_filename(path, n, NULL);
            collect(child, out);
        }
        return;
    }
    g_ptr_array_add(out, g_strdup(path));
}

int
main(int argc, char **argv)
{
    g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_free);
    for (int i = 1; i < argc; i++)
        collect(argv[i], files);
    printf("1..1\n");
    guint unreadable = 0;
    for (guint i = 0; i < files->len; i++) {
        g_autofree char *data = NULL;
        gsize len = 0;
        if (!g_file_get_contents(files->pdata[i], &data, &len, NULL)) {
            printf("# unreadable: %s\n", (char *)files->pdata[i]);
            unreadable++;
            continue;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    }
    if (files->len == 0 || unreadable)
        printf("not ok 1 - corpus empty or unreadable\n");
    else
        printf("ok 1 - replayed %u inputs\n", files->len);
    return 0;
}
