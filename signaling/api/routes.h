/* routes.h - the main process's route table. */
#pragma once

#include "http/http.h"

const SigRoute *sig_routes(guint *n);
