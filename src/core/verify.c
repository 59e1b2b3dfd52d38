/*
 * verify.c -- check an output of lines (or any safetensors file, plain or
 * .zst) against what was recorded when it was written.
 *
 * One sequential read of the file does everything: the raw bytes feed the
 * XXH3-128 of the OUT.xxh128 sidecar; the zstd decoder (for .zst) checks
 * the frame and its content checksum; the decoded header is validated as
 * strictly as any input and hashed; every tensor's bytes are hashed in
 * chunks and compared with the manifest. Memory is a few buffers, whatever
 * the size of the file. Every problem found is reported through the log
 * callback, with the tensor it lies in when there is one.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "checksum.h"
#include "ckpt.h"
#include "fmt_gguf.h"
#include "layers.h"
#include "st_format.h"
#include "stream.h"
#include "strutil.h"

#define VERIFY_BUF (1u << 20)

struct vctx {
	const struct lines_verify_opts *o;
	const char *path;
	struct lines_verify_result *r;
};

static void problem(struct vctx *v, const char *tensor, const char *fmt, ...)
	LINES_PRINTF(3, 4);
static void problem(struct vctx *v, const char *tensor, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	v->r->problems++;
	if (v->o && v->o->log)
		v->o->log(v->o->cb_ctx, LINES_LOG_ERROR, v->path, tensor ? tensor : "", msg);
}

static char *concat(const char *a, const char *b)
{
	char *s = malloc(strlen(a) + strlen(b) + 1);
	if (s)
		strcat(strcpy(s, a), b);
	return s;
}

/* A problem when the file's XXH3-128 (got) is not the one WHOSE gives. */
static void digest_differs(struct vctx *v, const struct xxh128 *got, const struct xxh128 *want,
                           const char *whose)
{
	char a[33], b[33];
	if (got->lo == want->lo && got->hi == want->hi)
		return;
	xxh128_hex(got, a);
	xxh128_hex(want, b);
	problem(v, NULL, "XXH3-128 %s differs from %s's %s", a, whose, b);
}

/* The expected XXH3-128 from a sidecar: 1 found, 0 absent, <0 unreadable. */
static int read_sidecar(struct vctx *v, const char *path, struct xxh128 *d)
{
	char line[4200];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO: not waited on */
	FILE *f = NULL;
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
		close(fd);
		problem(v, NULL, "the checksum file %s is %s", path,
		        S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
		return -1;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0 || !(f = fdopen(fd, "r"))) {
		close(fd);
		return -1;
	}
	if (!fgets(line, sizeof(line), f) || strlen(line) < 34 || xxh128_parse(line, d) < 0 ||
	    line[32] != ' ') {
		fclose(f);
		problem(v, NULL, "%s is not an XXH3-128 checksum line", path);
		return -1;
	}
	fclose(f);
	return 1;
}

/* A tensor's bytes hashed; compared with the manifest's entry. */
static void check_tensor(struct vctx *v, json_t *byname, const char *name, uint64_t h)
{
	char hex[17];
	const char *mh;
	xxh64_hex(h, hex);
	mh = json_string_value(json_object_get(json_object_get(byname, name), "xxh3_64"));
	if (!mh)
		problem(v, name, "not in the manifest");
	else if (strcmp(mh, hex))
		problem(v, name, "its bytes differ from what was written (XXH3 %s, the manifest says %s)",
		        hex, mh);
}

/*
 * A GGUF file (lines writes GGUF from GGUF inputs): its header is checked
 * as strictly as an input's (fmt_gguf.c), then one sequential read feeds
 * the file's XXH3-128, the header's XXH3-64 (every byte before the data
 * section, its padding included, as lines hashed it when writing) and each
 * tensor's (its bytes, not the padding after them). A .gguf.zst is read
 * the same way through z, its decompressed bytes up to the last tensor's
 * data and its padding (z hashes the raw bytes), then nothing may follow.
 */
static int verify_gguf(struct vctx *v, int fd, uint64_t size, struct zstream *z, json_t *man,
                       json_t *byname, size_t *ntensors, XXH3_state_t *raw, XXH3_state_t *ts,
                       unsigned char *buf)
{
	struct layers ly;
	struct ckpt *c = NULL;
	struct lines_error e;
	XXH3_state_t *hs = XXH3_createState();
	uint64_t pos = 0;
	size_t ti = 0;

	if (!hs || layers_init(&ly, NULL, &e) < 0) {
		problem(v, NULL, "out of memory");
		if (hs)
			XXH3_freeState(hs);
		return -1;
	}
	if (ckpt_open_file(&c, v->path, &ly, &e) < 0) { /* no count to compare */
		problem(v, e.tensor[0] ? e.tensor : NULL, "header: %s", e.msg);
		layers_free(&ly);
		XXH3_freeState(hs);
		return -1;
	}
	const struct ckpt_file *f = &c->files[0];
	if (z) { /* the decompressed size: the data, padded as lines writes it */
		uint64_t a = gguf_alignment(c);
		size = f->nentries ? f->data_end + (a - f->data_end % a) % a : f->data_start;
	}
	XXH3_64bits_reset(hs);
	XXH3_64bits_reset(ts);
	while (pos < size) {
		size_t k = size - pos < VERIFY_BUF ? (size_t)(size - pos) : VERIFY_BUF;
		uint64_t end = pos + k;
		if (z && zs_read(z, buf, k, &e) < 0) {
			problem(v, NULL, "the compressed frame: %s", e.msg);
			break;
		}
		if (!z && full_pread(fd, buf, k, pos) < 0) {
			problem(v, NULL, "cannot read at offset %llu", (unsigned long long)pos);
			break;
		}
		if (!z)
			XXH3_128bits_update(raw, buf, k);
		if (pos < f->data_start)
			XXH3_64bits_update(hs, buf, (size_t)((end < f->data_start ? end : f->data_start) - pos));
		while (ti < f->nentries) {
			const struct ckpt_entry *t = &f->entries[ti];
			uint64_t a = t->off > pos ? t->off : pos, b = t->off + t->nbytes;
			b = b < end ? b : end;
			if (a < b)
				XXH3_64bits_update(ts, buf + (a - pos), (size_t)(b - a));
			if (t->off + t->nbytes > end)
				break;
			if (man)
				check_tensor(v, byname, t->name, XXH3_64bits_digest(ts));
			XXH3_64bits_reset(ts);
			ti++;
		}
		pos = end;
	}
	*ntensors = f->nentries;
	if (z && pos == size && zs_expect_end(z, &e) < 0)
		problem(v, NULL, "%s", e.msg);
	if (z && zs_drain_raw(z, &e) < 0) /* the raw hash needs every byte */
		problem(v, NULL, "%s", e.msg);
	if (man) {
		const char *mh = json_string_value(json_object_get(json_object_get(man, "header"), "xxh3_64"));
		char hex[17];
		xxh64_hex(XXH3_64bits_digest(hs), hex);
		if (!mh || strcmp(mh, hex))
			problem(v, NULL, "header: its XXH3 %s differs from the manifest's %s", hex,
			        mh ? mh : "(missing)");
	}
	ckpt_close(c);
	layers_free(&ly);
	XXH3_freeState(hs);
	return 0;
}

int lines_verify(const char *path, const struct lines_verify_opts *o,
                 struct lines_verify_result *r, struct lines_error *err)
{
	struct vctx v = {o, path, r};
	struct stat st;
	struct xxh128 want = {0, 0}, mwant = {0, 0};
	struct st_header h;
	json_t *man = NULL, *mtensors = NULL, *byname = NULL;
	XXH3_state_t *raw = NULL, *ts = NULL;
	struct zstream *z = NULL;
	unsigned char prefix[8], *buf = NULL;
	char *json = NULL, *side = NULL, *mpath = NULL;
	uint64_t n = 0;
	int fd = -1, rc = 0, have_side = 0, have_mhash = 0, broken = 0;

	memset(r, 0, sizeof(*r));
	memset(&h, 0, sizeof(h));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO: refused, not waited on */
	if (fd < 0)
		return lines_errno(err, errno, path, "cannot open");
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		close(fd);
		/* a directory, a device, a pipe: lines-verify(1) calls it a usage error */
		return lines_errf(err, LINES_EUSAGE, path, NULL, "is not a regular file");
	}
	/* the companions of a model file are not one: a usage error, as a
	 * directory (their bytes would be read as a header) */
	const char *what = str_ends_with(path, ".index.json")   ? "a sharded model's index: verify its shards"
	                   : str_ends_with(path, ".manifest.json") ? "a manifest: verify the file it describes"
	                   : str_ends_with(path, ".xxh128")        ? "a checksum file: verify the file it names"
	                                                         : NULL;
	if (what) {
		close(fd);
		return lines_errf(err, LINES_EUSAGE, path, NULL, "is %s", what);
	}
	r->compressed = str_ends_with(path, ".zst");

	/* what to compare with */
	side = o && o->checksum_file ? strdup(o->checksum_file) : concat(path, ".xxh128");
	mpath = o && o->manifest_file ? strdup(o->manifest_file) : concat(path, ".manifest.json");
	buf = malloc(VERIFY_BUF);
	raw = XXH3_createState();
	ts = XXH3_createState();
	if (!side || !mpath || !buf || !raw || !ts) {
		rc = lines_errf(err, LINES_ENOMEM, path, NULL, "out of memory");
		goto out;
	}
	have_side = read_sidecar(&v, side, &want);
	if (have_side == 0 && o && o->checksum_file)
		problem(&v, NULL, "the checksum file %s does not exist", side);
	else if (have_side < 0 && errno != 0 && access(side, R_OK) != 0)
		problem(&v, NULL, "cannot read the checksum file %s: %s", side, strerror(errno));
	r->sidecar_checked = have_side > 0;
	if (o && o->manifest_file && access(mpath, F_OK) != 0)
		problem(&v, NULL, "the manifest %s does not exist", mpath);
	struct stat ms;
	if (stat(mpath, &ms) == 0 && !S_ISREG(ms.st_mode)) /* a FIFO would block */
		problem(&v, NULL, "the manifest %s is not a regular file", mpath);
	else if (access(mpath, F_OK) == 0) {
		json_error_t je;
		man = json_load_file(mpath, 0, &je);
		mtensors = json_object_get(man, "tensors");
		if (!man || !json_is_array(mtensors)) {
			problem(&v, NULL, "%s is not a lines manifest (%s)", mpath,
			        man ? "no tensor list" : je.text);
			json_decref(man);
			man = NULL;
			mtensors = NULL;
		} else {
			/* the file's XXH3-128 as the manifest has it, compared at
			 * the end where no checksum file says the same, and only
			 * for a file stored as the manifest's was: its tensors'
			 * hashes are of the uncompressed bytes, so a .zst checked
			 * against the plain file's manifest, or the other way,
			 * is compared by them alone */
			json_t *mhj = json_object_get(man, "xxh3_128");
			const char *mh = json_string_value(mhj);
			const char *mc = json_string_value(json_object_get(man, "compression"));
			int same_form = !mc || !strcmp(mc, r->compressed ? "zstd" : "none");
			if (mhj && !(mh && strlen(mh) == 32 && xxh128_parse(mh, &mwant) == 0))
				problem(&v, NULL, "%s: its xxh3_128 is not 32 hexadecimal digits", mpath);
			else if (mhj && same_form)
				have_mhash = !(have_side > 0 && mwant.lo == want.lo && mwant.hi == want.hi);
			r->manifest_checked = 1;
			/* name -> entry, so that each tensor is found at once */
			byname = json_object();
			for (size_t k = 0; byname && k < json_array_size(mtensors); k++) {
				json_t *me = json_array_get(mtensors, k);
				const char *nm = json_string_value(json_object_get(me, "name"));
				if (nm)
					json_object_set(byname, nm, me);
			}
		}
	}
	if (!r->sidecar_checked && !r->manifest_checked && !r->compressed && o && o->log)
		o->log(o->cb_ctx, LINES_LOG_NOTE, path, "",
		       "no checksum sidecar and no manifest: only the structure is checked");

	XXH3_128bits_reset(raw);
	if (!r->compressed && st.st_size >= 4 && full_pread(fd, prefix, 4, 0) == 0 &&
	    !memcmp(prefix, "GGUF", 4)) {
		size_t nt = 0;
		int hdr = verify_gguf(&v, fd, (uint64_t)st.st_size, NULL, man, byname, &nt, raw, ts, buf);
		r->tensors_checked = nt;
		if (hdr == 0 && man && json_array_size(mtensors) != nt)
			problem(&v, NULL, "the manifest lists %zu tensors, the file holds %zu",
			        json_array_size(mtensors), nt);
		goto compare;
	}
	if ((rc = zs_open(&z, fd, r->compressed, 1, path, err)) < 0)
		goto out;
	/* a compressed GGUF (.gguf.zst): its first decompressed bytes tell */
	struct lines_error e;
	int gguf = r->compressed && zs_read(z, prefix, 4, &e) == 0 && !memcmp(prefix, "GGUF", 4);
	if (r->compressed && (rc = zs_rewind(z, err)) < 0)
		goto out;
	zs_hash_raw(z, raw);
	if (gguf) {
		size_t nt = 0;
		int hdr = verify_gguf(&v, fd, 0, z, man, byname, &nt, raw, ts, buf);
		r->tensors_checked = nt;
		if (hdr == 0 && man && json_array_size(mtensors) != nt)
			problem(&v, NULL, "the manifest lists %zu tensors, the file holds %zu",
			        json_array_size(mtensors), nt);
		goto compare;
	}

	/* the header */
	if (zs_read(z, prefix, 8, &e) < 0 ||
	    st_parse_prefix(prefix, r->compressed ? UINT64_MAX : (uint64_t)st.st_size, &n, path,
	                    &e) < 0 ||
	    !(json = malloc(n ? (size_t)n : 1)) || zs_read(z, json, (size_t)n, &e) < 0 ||
	    st_parse(json, n, r->compressed ? UINT64_MAX : (uint64_t)st.st_size, &h, path, &e) < 0) {
		problem(&v, e.tensor[0] ? e.tensor : NULL, "%s%s",
		        strncmp(e.msg, "header", 6) ? "header: " : "", e.msg);
		broken = 1;
	} else {
		uint64_t hh;
		XXH3_64bits_reset(ts);
		XXH3_64bits_update(ts, prefix, 8);
		XXH3_64bits_update(ts, json, (size_t)n);
		hh = XXH3_64bits_digest(ts);
		if (man) {
			const char *mh = json_string_value(json_object_get(json_object_get(man, "header"), "xxh3_64"));
			char hex[17];
			xxh64_hex(hh, hex);
			if (!mh || strcmp(mh, hex))
				problem(&v, NULL, "header: its XXH3 %s differs from the manifest's %s", hex,
				        mh ? mh : "(missing)");
		}
	}

	/* every tensor, in the order of the data */
	for (size_t i = 0; !broken && i < h.ntensors; i++) {
		const struct st_tensor *t = &h.tensors[i];
		uint64_t left = t->end - t->begin;
		XXH3_64bits_reset(ts);
		while (left) {
			size_t k = left < VERIFY_BUF ? (size_t)left : VERIFY_BUF;
			if (zs_read(z, buf, k, &e) < 0) {
				/* a damaged frame is noticed where it ends, not
				 * where it was hit: say both, name the frame */
				problem(&v, NULL, "the compressed frame: %s (noticed while reading %s)",
				        e.msg, t->name);
				broken = 1;
				break;
			}
			XXH3_64bits_update(ts, buf, k);
			left -= k;
		}
		if (broken)
			break;
		r->tensors_checked++;
		if (man) {
			char hex[17];
			const char *mh = NULL;
			xxh64_hex(XXH3_64bits_digest(ts), hex);
			mh = json_string_value(json_object_get(json_object_get(byname, t->name), "xxh3_64"));
			if (!mh)
				problem(&v, t->name, "not in the manifest");
			else if (strcmp(mh, hex))
				problem(&v, t->name, "its bytes differ from what was written (XXH3 %s, "
				                     "the manifest says %s)", hex, mh);
		}
	}
	if (!broken && man && json_array_size(mtensors) != h.ntensors)
		problem(&v, NULL, "the manifest lists %zu tensors, the file holds %zu",
		        json_array_size(mtensors), h.ntensors);
	if (!broken) {
		int end = zs_expect_end(z, &e);
		if (end < 0)
			problem(&v, NULL, "%s", e.msg);
	}
	/* the raw hash needs every byte, even past a damaged frame */
	if (zs_drain_raw(z, &e) < 0)
		problem(&v, NULL, "%s", e.msg);
compare:
	if (have_side > 0 || have_mhash) {
		XXH128_hash_t d = XXH3_128bits_digest(raw);
		struct xxh128 got = {d.low64, d.high64};
		if (have_side > 0)
			digest_differs(&v, &got, &want, side);
		if (have_mhash)
			digest_differs(&v, &got, &mwant, "the manifest");
	}
	if (r->problems)
		rc = lines_errf(err, LINES_ECORRUPT, path, NULL, "%zu problem%s found", r->problems,
		                r->problems == 1 ? "" : "s");
out:
	zs_close(z);
	st_header_free(&h);
	json_decref(byname);
	json_decref(man);
	if (raw)
		XXH3_freeState(raw);
	if (ts)
		XXH3_freeState(ts);
	free(buf);
	free(json);
	free(side);
	free(mpath);
	close(fd);
	return rc;
}
