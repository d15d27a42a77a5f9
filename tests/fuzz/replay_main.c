/* replay_main.c - runs a fuzz target over files (or directories of files)
 * without libFuzzer: how the normal test run replays the seed corpora and
 * every crash input ever found.  Prints TAP. */
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
        while (d && (n = g_dir_read_name(d)))
            collect(g_build_filename(path, n, NULL), out);
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
    printf("1..%u\n", files->len);
    for (guint i = 0; i < files->len; i++) {
        g_autofree char *data = NULL;
        gsize len = 0;
        if (!g_file_get_contents(files->pdata[i], &data, &len, NULL)) {
            printf("not ok %u - %s (unreadable)\n", i + 1, (char *)files->pdata[i]);
            continue;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)data, len);
        printf("ok %u - %s\n", i + 1, (char *)files->pdata[i]);
    }
    return 0;
}
