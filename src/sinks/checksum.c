/*
 * checksum.c -- XXH3 for outputs: a sink that hashes the bytes it passes
 * (the whole file as written, for the OUT.xxh128 sidecar), the sidecar's
 * format, and the hex forms the manifest and `lines verify` share.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <xxhash.h>

#include "checksum.h"

struct sink_hash {
	struct sink base;
	struct sink *next;
	XXH3_state_t *st;
	struct xxh128 *digest;
};

static int sh_write(struct sink *s, const void *buf, size_t len, struct lines_error *err)
{
	struct sink_hash *h = (struct sink_hash *)s;
	XXH3_128bits_update(h->st, buf, len);
	return sink_write(h->next, buf, len, err);
}

static int sh_finish(struct sink *s, struct lines_error *err)
{
	struct sink_hash *h = (struct sink_hash *)s;
	XXH128_hash_t d;
	FORWARD_IF_ERROR(sink_finish(h->next, err));
	d = XXH3_128bits_digest(h->st);
	h->digest->lo = d.low64;
	h->digest->hi = d.high64;
	return 0;
}

static int sh_commit(struct sink *s, struct lines_error *err)
{
	return sink_commit(((struct sink_hash *)s)->next, err);
}
static void sh_abort(struct sink *s) { sink_abort(((struct sink_hash *)s)->next); }
static void sh_free(struct sink *s)
{
	struct sink_hash *h = (struct sink_hash *)s;
	XXH3_freeState(h->st);
	sink_free(h->next);
	free(h);
}

static const struct sink_ops sink_hash_ops = {sh_write, sh_finish, sh_commit, sh_abort, sh_free};

int sink_hash_open(struct sink **out, struct sink *next, struct xxh128 *digest,
                   struct lines_error *err)
{
	struct sink_hash *h = calloc(1, sizeof(*h));
	if (h)
		h->st = XXH3_createState();
	if (!h || !h->st) {
		free(h);
		return lines_errf(err, LINES_ENOMEM, next->name, NULL, "out of memory");
	}
	XXH3_128bits_reset(h->st);
	h->next = next;
	h->digest = digest;
	h->base.ops = &sink_hash_ops;
	h->base.name = next->name;
	*out = &h->base;
	return 0;
}

void xxh128_hex(const struct xxh128 *d, char hex[33])
{
	/* the canonical form xxhsum prints: high half first, big-endian */
	snprintf(hex, 33, "%016llx%016llx", (unsigned long long)d->hi, (unsigned long long)d->lo);
}

void xxh64_hex(uint64_t v, char hex[17]) { snprintf(hex, 17, "%016llx", (unsigned long long)v); }

int xxh128_parse(const char *hex, struct xxh128 *d)
{
	unsigned long long hi, lo;
	char a[17], b[17];
	for (int i = 0; i < 32; i++)
		if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f') ||
		      (hex[i] >= 'A' && hex[i] <= 'F')))
			return -1;
	memcpy(a, hex, 16), a[16] = 0;
	memcpy(b, hex + 16, 16), b[16] = 0;
	hi = strtoull(a, NULL, 16);
	lo = strtoull(b, NULL, 16);
	d->hi = hi;
	d->lo = lo;
	return 0;
}

int sidecar_line(char *buf, size_t n, const struct xxh128 *d, const char *name)
{
	char hex[33];
	xxh128_hex(d, hex);
	/* the GNU format that `xxhsum -c` reads: hash, two spaces, name */
	return snprintf(buf, n, "%s  %s\n", hex, name);
}
