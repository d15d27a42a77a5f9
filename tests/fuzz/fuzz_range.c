/* Fuzz target: the Range header parser (replay's byte ranges). */
#include <stdint.h>
#include <string.h>

#include "api/recordings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    /* The first four bytes pick the file size; the rest is the header. */
    gint64 fsize = (gint64)(data[0] | data[1] << 8 | data[2] << 16) * (data[3] % 4 + 1);
    char *h = g_strndup((const char *)data + 4, size - 4);
    gint64 from = -7, to = -7;
    int r = sig_parse_range(h, fsize, &from, &to);
    if (r == 1)
        g_assert(from >= 0 && from <= to && to < fsize);
    else
        g_assert(from == -7 && to == -7);
    g_free(h);
    return 0;
}
