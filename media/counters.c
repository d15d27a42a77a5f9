/* counters.c - see counters.h. */
#include "counters.h"

guint64 media_counters[MEDIA_N_COUNTERS];
