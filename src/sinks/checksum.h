/*
 * checksum.h -- XXH3 hashes of outputs: the hashing sink (declared in
 * sink.h), and the text forms of the OUT.xxh128 sidecar and the manifest.
 */
#ifndef LINES_CHECKSUM_H
#define LINES_CHECKSUM_H

#include "sink.h"

/* 32 lowercase hex digits, as xxhsum prints an XXH3-128 (NUL-terminated). */
void xxh128_hex(const struct xxh128 *d, char hex[33]);
/* 16 lowercase hex digits of an XXH3-64. */
void xxh64_hex(uint64_t v, char hex[17]);
/* Parse 32 hex digits; -1 if they are not. */
int xxh128_parse(const char *hex, struct xxh128 *d);
/* "HASH  NAME\n", the GNU checksum line `xxhsum -c` checks. */
int sidecar_line(char *buf, size_t n, const struct xxh128 *d, const char *name);

#endif
