/*
 * hub.h -- models named as on the Hugging Face hub, found in the local
 * cache (see hub.c). No network access, ever.
 */
#ifndef LINES_HUB_H
#define LINES_HUB_H

#include "internal.h"

/* ref looks like "org/name" or "org/name@revision". */
int hub_is_id(const char *ref);
/* ref is mergekit's "model+lora" (and no file has that name). */
int hub_is_lora(const char *ref);
/* The snapshot directory of hub id ref in the cache (malloc'ed), or an
 * error that names every place looked at. */
int hub_resolve(const char *ref, char **dir, struct lines_error *err);

#endif
