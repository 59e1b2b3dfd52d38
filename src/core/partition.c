/*
 * partition.c -- one merge as M parts run anywhere (--part K/M), then
 * assembled: the same bytes as a run on one machine.
 *
 * The shards of a directory output are laid out from the plan alone
 * (output.c), never from M; shard s of S belongs to part floor(s M / S),
 * so part K writes the contiguous shards [ceil(K S / M), ceil((K+1) S / M))
 * and reads only their tensors (pipe_env's tensor range). Every tensor
 * is whole in one shard, so a method whose results are per tensor needs
 * nothing else.
 *
 * Whole-model statistics (automatic alpha's norms) are passes marked
 * `stats`: their reduce() keeps per-tensor partial results in the
 * context's table (merge_ctx.tstats) and their done() adds the table in
 * output order. The one-machine run does exactly that too, so the sums
 * group the same way whatever M is. A round (one stats pass) is a map
 * step per part (--stats-out: the part's rows of the table, each double
 * as a C99 hex float, exact) and a reduce step (`lines stats`: every
 * part of one plan and round, each once, concatenated in output order);
 * the next step reads the combined file (--stats), sets its table from
 * it and runs the pass's done() instead of the pass.
 *
 * A plan is named by a hash over the inputs' headers (every file's
 * tensors, offsets and metadata), the options that change a byte of the
 * output, and the output's tensors and shards: a stats file or an output
 * directory of another plan is refused.
 *
 * Assembly: each part moves its shards, their .xxh128 and .manifest.json
 * and the base's small files into OUT/ one by one (each complete before
 * its rename), and writes OUT/.lines-plan.json, the same bytes from every
 * part: the plan's hash, its shards and their headers' lengths and XXH3-64
 * (which the plan decides), and the text of the files that only the whole
 * output can have (the index, README.md, lines_config.yml).
 * `lines index OUT/` checks every shard's header against the plan's and
 * the shard with lines_verify(), writes those files and removes
 * .lines-plan.json.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "checksum.h"
#include "plan.h"
#include "strutil.h"

#define STATS_FORMAT 1
#define PLANFILE ".lines-plan.json"

/* ---- the plan's identity --------------------------------------------------------------------- */
static void h_bytes(XXH3_state_t *h, const void *b, size_t n) { XXH3_128bits_update(h, b, n); }
static void h_str(XXH3_state_t *h, const char *s)
{
	s = s ? s : "(null)";
	h_bytes(h, s, strlen(s) + 1);
}
static void h_u64(XXH3_state_t *h, uint64_t v) { h_bytes(h, &v, sizeof(v)); }
static void h_dbl(XXH3_state_t *h, double v) { h_bytes(h, &v, sizeof(v)); }
static void h_dbls(XXH3_state_t *h, const double *v, size_t n)
{
	h_u64(h, v ? n : 0);
	if (v)
		h_bytes(h, v, n * sizeof(*v));
}

static void h_inputs(XXH3_state_t *h, const struct plan *p)
{
	for (unsigned m = 0; m < p->in.ninputs; m++) {
		const struct ckpt *c = p->in.ck[m];
		h_u64(h, c->nfiles);
		for (size_t f = 0; f < c->nfiles; f++) {
			const struct ckpt_file *cf = &c->files[f];
			h_u64(h, cf->disk_size);
			h_u64(h, cf->nentries);
			for (size_t e = 0; e < cf->nentries; e++) {
				const struct ckpt_entry *ce = &cf->entries[e];
				h_str(h, ce->name);
				h_u64(h, (uint64_t)ce->dtype);
				h_u64(h, ce->rank);
				for (unsigned r = 0; r < ce->rank; r++)
					h_u64(h, ce->shape[r]);
				h_u64(h, ce->off);
				h_u64(h, ce->nbytes);
			}
			h_u64(h, cf->nmeta);
			for (size_t k = 0; k < cf->nmeta; k++) {
				h_str(h, cf->meta[k].key);
				h_str(h, cf->meta[k].value);
			}
		}
	}
}

static void h_options(XXH3_state_t *h, const struct plan *p)
{
	const struct lines_merge_opts *o = &p->o;
	h_str(h, o->command);
	h_str(h, p->method->name);
	h_dbls(h, p->sc.w, p->lay.nmodels);
	h_dbl(h, o->lambda);
	h_u64(h, (uint64_t)o->lines);
	h_u64(h, (uint64_t)o->alpha_auto);
	h_dbl(h, o->alpha);
	h_dbl(h, o->beta);
	h_u64(h, (uint64_t)o->norm_p);
	h_dbl(h, o->density);
	h_dbls(h, o->densities, o->nmodels);
	h_u64(h, (uint64_t)o->trim_tensor);
	h_u64(h, o->seed);
	h_u64(h, (uint64_t)o->dare_elect);
	h_u64(h, (uint64_t)o->no_normalize);
	h_u64(h, (uint64_t)o->rescale);
	h_dbl(h, o->t);
	h_u64(h, o->consensus_k);
	h_dbl(h, o->tall_lambda);
	h_dbls(h, o->tall_lambdas, o->nmodels);
	h_u64(h, (uint64_t)o->consensus_ties);
	h_dbl(h, o->ram_epsilon);
	h_dbl(h, o->ram_r);
	h_dbl(h, o->ram_alpha);
	h_u64(h, (uint64_t)o->per_row);
	h_u64(h, o->max_iter);
	h_dbl(h, o->tol);
	h_dbl(h, o->della_epsilon);
	h_dbls(h, o->della_epsilons, o->nmodels);
	h_dbl(h, o->bc_gamma);
	h_dbls(h, o->bc_gammas, o->nmodels);
	h_dbl(h, o->select_topk);
	h_str(h, o->dtype);
	h_u64(h, (uint64_t)o->vocab_base);
	h_u64(h, (uint64_t)o->no_copy);
	h_u64(h, (uint64_t)o->no_checksum);
	h_str(h, o->config_yaml);
}

static void h_layout(XXH3_state_t *h, const struct plan *p)
{
	h_u64(h, p->lay.nt);
	h_u64(h, (uint64_t)p->lay.L);
	for (size_t i = 0; i < p->lay.nt; i++) {
		const struct tensor *t = &p->lay.t[i];
		h_str(h, t->name);
		h_u64(h, (uint64_t)tensor_file_dt(t));
		h_u64(h, t->rank);
		for (unsigned r = 0; r < t->rank; r++)
			h_u64(h, t->shape[r]);
		h_u64(h, t->out_off);
		h_u64(h, (uint64_t)t->block);
		h_u64(h, (uint64_t)t->stack);
		h_u64(h, (uint64_t)t->merge);
		h_dbl(h, t->t); /* slerp's t per tensor (slices) */
	}
	for (size_t k = 0; k < p->lay.nstacks; k++) {
		h_str(h, p->lay.stacks[k].name);
		h_u64(h, (uint64_t)p->lay.stacks[k].first);
		h_u64(h, (uint64_t)p->lay.stacks[k].ramp);
	}
	h_u64(h, p->out.nshards);
	for (size_t k = 0; k < p->out.nshards; k++) {
		h_str(h, p->out.shards[k].name);
		h_u64(h, p->out.shards[k].t0);
		h_u64(h, p->out.shards[k].t1);
	}
}

static void plan_hash(struct plan *p)
{
	XXH3_state_t *h = XXH3_createState();
	struct xxh128 d = {0, 0};
	if (h) {
		XXH3_128bits_reset(h);
		h_str(h, "lines partitioned plan 1");
		h_inputs(h, p);
		h_options(h, p);
		h_layout(h, p);
		XXH128_hash_t r = XXH3_128bits_digest(h);
		d.lo = r.low64, d.hi = r.high64;
		XXH3_freeState(h);
	}
	xxh128_hex(&d, p->part.hash);
}

/* ---- small files ------------------------------------------------------------------------------- */
/* Write text to path: a temporary name, then renamed into place. */
static int put_text(const char *path, const char *text, struct lines_error *err)
{
	struct sink *s = NULL;
	int rc = sink_file_open(&s, path, err);
	if (rc == 0)
		rc = sink_write(s, text, strlen(text), err);
	if (rc == 0)
		rc = sink_commit(s, err);
	else if (s)
		sink_abort(s);
	sink_free(s);
	return rc;
}

/* The directory of a statistics file is made when missing (one level:
 * OUT.stats/ beside OUT, as lines merge -n shows). */
static void make_parent(const char *path)
{
	char *c = strdup(path), *slash = c ? strrchr(c, '/') : NULL;
	if (slash && slash != c) {
		*slash = '\0';
		mkdir(c, 0777);
	}
	free(c);
}

static int put_json(const char *path, json_t *root, struct lines_error *err)
{
	make_parent(path);
	char *text = lines_json_text(root, JSON_INDENT(1) | JSON_ENSURE_ASCII);
	int rc;
	RETURN_ERROR_IF(!text, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	rc = put_text(path, text, err);
	free(text);
	return rc;
}

static json_t *load_json(const char *path, const char *what, struct lines_error *err)
{
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je);
	if (!root) {
		if (access(path, F_OK) < 0)
			lines_errno(err, errno, path, "cannot read the %s", what);
		else
			lines_errf(err, LINES_EFORMAT, path, NULL, "line %d: not a %s (%s)", je.line, what,
			           je.text);
	}
	return root;
}

/* ---- the plan of a part ------------------------------------------------------------------------- */
static unsigned count_stats_passes(const struct plan *p)
{
	unsigned n = 0;
	for (unsigned i = 0; i < p->passes.n; i++)
		n += !!p->passes.pass[i].stats;
	return n;
}

/* Round r (1-based) of the --stats file into the method's state, before
 * its stats pass's done(): the norm sums of every tensor into the
 * context's table, or the method's own (stats_load). */
int part_load_round(struct plan *p, unsigned r, struct lines_error *err)
{
	const char *path = p->o.stats_in;
	json_t *res = json_array_get(p->part.loaded, r - 1);
	json_t *rows = json_object_get(res, "rows");
	json_int_t t0 = json_integer_value(json_object_get(res, "t0"));
	json_int_t t1 = json_integer_value(json_object_get(res, "t1"));
	RETURN_ERROR_IF(!json_is_object(res) ||
	                        json_integer_value(json_object_get(res, "round")) != (json_int_t)r ||
	                        !json_is_array(rows) || t0 != 0 || t1 != (json_int_t)p->lay.nt ||
	                        json_array_size(rows) != p->lay.nt,
	                err, LINES_EFORMAT, path, NULL,
	                "round %u: not a combined statistics file of this plan (run lines stats on "
	                "the parts)",
	                r);
	if (p->method->stats_load)
		return p->method->stats_load(&p->ctx, r, res, err);
	for (size_t i = 0; i < p->lay.nt; i++) {
		json_t *row = json_array_get(rows, i);
		RETURN_ERROR_IF(json_array_size(row) != 4, err, LINES_EFORMAT, path, NULL,
		                "tensor %zu: not 4 sums", i);
		for (size_t j = 0; j < 4; j++)
			RETURN_ERROR_IF(json_unhexf(json_array_get(row, j), &p->ctx.tstats[4 * i + j]) < 0,
			                err, LINES_EFORMAT, path, NULL, "tensor %zu: not a hex float", i);
	}
	return 0;
}

/* The --stats file: of this plan, complete, the rounds before this step. */
static int load_stats(struct plan *p, struct lines_error *err)
{
	const char *path = p->o.stats_in;
	json_t *root = load_json(path, "statistics file (JSON)", err);
	int rc = 0;
	if (!root)
		return LINES_EFORMAT;
	const char *plan = json_string_value(json_object_get(root, "plan"));
	json_t *results = json_object_get(root, "results");
	if (json_integer_value(json_object_get(root, "lines_stats")) != STATS_FORMAT ||
	    !json_is_array(results))
		rc = lines_errf(err, LINES_EFORMAT, path, NULL, "not a lines statistics file");
	else if (!plan || strcmp(plan, p->part.hash))
		rc = lines_errf(err, LINES_EUSAGE, path, NULL,
		                "statistics of another plan (plan %s, this one is %s): other inputs or "
		                "options than this run's",
		                plan ? plan : "?", p->part.hash);
	else if (!json_is_null(json_object_get(root, "part")))
		rc = lines_errf(err, LINES_EUSAGE, path, NULL,
		                "the statistics of one part only: combine every part with lines stats, "
		                "and give the combined file");
	if (rc == 0) {
		p->part.have = (unsigned)json_array_size(results);
		p->part.loaded = json_incref(results);
	}
	json_decref(root);
	return rc;
}

/*
 * An existing OUT/.lines-plan.json of another plan: refused now. Without
 * one, OUT may hold only parts at work (.lines-part-K, and the lock of a
 * mount point's output, .lines-lock: a part moves the plan file first, so
 * any other file of a part comes after it); anything
 * else (an assembled model, which lines index left without the plan file,
 * or files of no run) is refused too: the shards would mix two merges.
 */
static int check_out_plan(struct plan *p, struct lines_error *err)
{
	char *path = str_join_path(p->out.dir, PLANFILE);
	struct stat st;
	int rc = 0;
	RETURN_ERROR_IF(!path, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	if (stat(path, &st) < 0) {
		DIR *dh = opendir(p->out.dir);
		struct dirent *e;
		const char *other = NULL;
		while (dh && !other && (e = readdir(dh)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
			    strncmp(e->d_name, ".lines-", 7)) /* a part's directory, a lock */
				other = e->d_name;
		if (other)
			rc = lines_errf(err, LINES_EUSAGE, p->out.dir, NULL,
			                "holds %s and no part of this plan (a finished model, or "
			                "files of another run): give an empty or new output directory",
			                other);
		if (dh)
			closedir(dh);
	} else {
		json_t *root = load_json(path, "plan file", err);
		const char *h = json_string_value(json_object_get(root, "plan"));
		if (!root)
			rc = LINES_EFORMAT;
		else if (!h || strcmp(h, p->part.hash))
			rc = lines_errf(err, LINES_EUSAGE, p->out.dir, NULL,
			                "holds the parts of another plan (%s, this one is %s): give "
			                "another output directory",
			                h ? h : "?", p->part.hash);
		json_decref(root);
	}
	free(path);
	return rc;
}

int part_setup(struct plan *p, struct lines_error *err)
{
	const struct lines_merge_opts *o = &p->o;
	struct part *pt = &p->part;

	pt->t0 = 0, pt->t1 = p->lay.nt;
	if (!o->part_m) {
		RETURN_ERROR_IF(o->stats_in || o->stats_out, err, LINES_EUSAGE, NULL, NULL,
		                "--stats and --stats-out belong to a partitioned run (--part K/M)");
		return 0;
	}
	RETURN_ERROR_IF(o->part_k >= o->part_m, err, LINES_EUSAGE, NULL, NULL,
	                "--part %u/%u: K counts from 0 and must be below M", o->part_k, o->part_m);
	RETURN_ERROR_IF(!p->out.dir, err, LINES_EUSAGE, o->output, NULL,
	                "--part writes whole shards of a directory output: give -o DIR/ (not a "
	                "file or standard output)");
	RETURN_ERROR_IF(p->out.gguf_prefix, err, LINES_EUSAGE, o->output, NULL,
	                "--part writes safetensors shards for lines index: a GGUF output is "
	                "written on one machine");
	RETURN_ERROR_IF(o->sweep != LINES_SWEEP_NONE, err, LINES_EUSAGE, NULL, NULL,
	                "--part runs one value at a time: give the swept option one value");
	RETURN_ERROR_IF(o->no_checksum, err, LINES_EUSAGE, NULL, NULL,
	                "--part needs the shards' checksums and manifests (lines index checks "
	                "them): leave out --no-checksum");
	RETURN_ERROR_IF(!(p->method->flags & METHOD_PART), err, LINES_EUSAGE, NULL, NULL,
	                "-m %s does not run in parts yet (its whole-model statistics have no "
	                "stats files): run it on one machine",
	                p->method->name);
	pt->on = 1;
	pt->k = o->part_k, pt->m = o->part_m;
	size_t S = p->out.nshards, M = o->part_m;
	pt->s0 = (size_t)(((uint64_t)o->part_k * S + M - 1) / M);
	pt->s1 = (size_t)(((uint64_t)(o->part_k + 1) * S + M - 1) / M);
	pt->t0 = pt->s0 < pt->s1 ? p->out.shards[pt->s0].t0 : 0;
	pt->t1 = pt->s0 < pt->s1 ? p->out.shards[pt->s1 - 1].t1 : 0;
	plan_hash(p);
	return 0;
}

int part_after_setup(struct plan *p, struct lines_error *err)
{
	const struct lines_merge_opts *o = &p->o;
	struct part *pt = &p->part;
	if (!pt->on)
		return 0;
	pt->rounds = count_stats_passes(p);
	for (unsigned i = 0; i < p->passes.n; i++)
		RETURN_ERROR_IF(p->passes.pass[i].whole_model, err, LINES_EUSAGE, NULL, NULL,
		                "-m %s with these options computes whole-model results (its %s pass) "
		                "that do not run in parts yet: run it on one machine%s",
		                p->method->name, p->passes.pass[i].name,
		                o->lines && !p->sc.alpha_known ? ", or give --alpha" : "");
	RETURN_ERROR_IF(o->lines && !p->sc.alpha_known && !pt->rounds, err, LINES_EUSAGE, NULL, NULL,
	                "automatic alpha of -m %s is not measured in parts yet: give --alpha, or "
	                "run on one machine",
	                p->method->name);
	if (o->stats_in)
		FORWARD_IF_ERROR(load_stats(p, err));
	RETURN_ERROR_IF(pt->have > pt->rounds, err, LINES_EUSAGE, o->stats_in, NULL,
	                "holds %u rounds of statistics; this plan has %u", pt->have, pt->rounds);
	/* a stats pass read from --stats that would have compared the copied
	 * tensors with the base's: the writing pass does it instead */
	for (unsigned r = 1; r <= pt->have; r++) {
		unsigned i = part_stats_pass(p, r);
		if (i < p->passes.n && p->passes.pass[i].checks_copies)
			p->env.check_in_write = 1;
	}
	if (o->stats_out) {
		RETURN_ERROR_IF(plan_is_input(p, o->stats_out), err, LINES_EUSAGE, o->stats_out, NULL,
		                "--stats-out names one of the inputs; refusing to overwrite it");
		RETURN_ERROR_IF(o->stats_in && same_file(o->stats_in, o->stats_out), err, LINES_EUSAGE,
		                o->stats_out, NULL,
		                "--stats-out names the --stats file, which holds the rounds before");
		RETURN_ERROR_IF(!pt->rounds, err, LINES_EUSAGE, NULL, NULL,
		                "-m %s with these options needs no statistics: leave out --stats-out "
		                "and write the parts",
		                p->method->name);
		RETURN_ERROR_IF(pt->have == pt->rounds, err, LINES_EUSAGE, o->stats_in, NULL,
		                "holds every round (%u) of this plan: nothing left to measure; write "
		                "the parts with --stats and without --stats-out",
		                pt->rounds);
		pt->round = pt->have + 1;
		return 0;
	}
	return 0;
}

/* Before a part writes (not for -n): every round given, and the output
 * directory free of another plan's parts. */
int part_check_run(struct plan *p, struct lines_error *err)
{
	const struct part *pt = &p->part;
	if (!pt->on || pt->round)
		return 0;
	RETURN_ERROR_IF(pt->have < pt->rounds, err, LINES_EUSAGE, p->o.stats_in, NULL,
	                "this plan needs %u round%s of statistics before it writes, and %s: run "
	                "the map and reduce steps first (lines merge -n --part %u/%u shows them)",
	                pt->rounds, pt->rounds == 1 ? "" : "s",
	                p->o.stats_in ? "this file holds fewer" : "no --stats was given", pt->k, pt->m);
	return check_out_plan(p, err);
}

/* The stats pass r (1-based) of the plan: its index, or passes.n. */
unsigned part_stats_pass(const struct plan *p, unsigned r)
{
	for (unsigned i = 0; i < p->passes.n; i++)
		if (p->passes.pass[i].stats && --r == 0)
			return i;
	return p->passes.n;
}

/* --stats-out: the part's rows of round pt->round, and the rounds before. */
int part_write_stats(struct plan *p, struct lines_error *err)
{
	const struct part *pt = &p->part;
	json_t *root = json_object(), *results = pt->loaded ? json_deep_copy(pt->loaded) : json_array();
	json_t *res = NULL;
	int rc;
	if (p->method->stats_save) {
		res = p->method->stats_save(&p->ctx, pt->round, pt->t0, pt->t1);
	} else if ((res = json_object())) { /* the norm sums of its tensors */
		json_t *rows = json_array();
		for (size_t i = pt->t0; rows && i < pt->t1; i++) {
			json_t *row = json_array();
			for (int j = 0; j < 4; j++)
				json_array_append_new(row, json_hexf(p->ctx.tstats[4 * i + j]));
			json_array_append_new(rows, row);
		}
		json_object_set_new(res, "kind", json_string("norms"));
		json_object_set_new(res, "rows", rows);
	}
	if (!root || !results || !res) {
		json_decref(root), json_decref(results), json_decref(res);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	json_object_set_new(res, "round", json_integer(pt->round));
	json_object_set_new(res, "t0", json_integer((json_int_t)pt->t0));
	json_object_set_new(res, "t1", json_integer((json_int_t)pt->t1));
	json_array_append_new(results, res);
	json_object_set_new(root, "lines_stats", json_integer(STATS_FORMAT));
	json_object_set_new(root, "plan", json_string(pt->hash));
	json_object_set_new(root, "rounds", json_integer(pt->rounds));
	json_object_set_new(root, "round", json_integer(pt->round));
	json_object_set_new(root, "parts", json_integer(pt->m));
	json_object_set_new(root, "part", json_integer(pt->k));
	json_object_set_new(root, "ntensors", json_integer((json_int_t)p->lay.nt));
	json_object_set_new(root, "results", results);
	rc = put_json(p->o.stats_out, root, err);
	json_decref(root);
	return rc;
}

/* The text of OUT/.lines-plan.json: every part writes the same. */
int part_plan_text(const struct plan *p, const char *index_json, const char *readme, char **out,
                   struct lines_error *err)
{
	json_t *root = json_object(), *shards = json_array(), *heads = json_array();
	if (!root || !shards || !heads) {
		json_decref(root), json_decref(shards), json_decref(heads);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	/* each shard's name, and its header's length and XXH3-64, which the
	 * plan decides: lines index knows a shard of another plan by them */
	for (size_t k = 0; k < p->out.nshards; k++) {
		const struct shard *sh = &p->out.shards[k];
		unsigned char *hdr = NULL;
		size_t hl = 0;
		char hex[17];
		json_array_append_new(shards, json_string(sh->name));
		int rc = plan_header(p, sh->t0, sh->t1, &hdr, &hl, err);
		if (rc < 0) {
			json_decref(root), json_decref(shards), json_decref(heads);
			return rc;
		}
		xxh64_hex(XXH3_64bits(hdr, hl), hex);
		free(hdr);
		if (json_array_append_new(heads, json_pack("{s:I,s:s}", "bytes", (json_int_t)hl,
		                                           "xxh3", hex)) < 0) {
			json_decref(root), json_decref(shards), json_decref(heads);
			return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		}
	}
	json_object_set_new(root, "lines_plan", json_integer(STATS_FORMAT));
	json_object_set_new(root, "plan", json_string(p->part.hash));
	json_object_set_new(root, "shards", shards);
	json_object_set_new(root, "headers", heads);
	json_object_set_new(root, "index", index_json ? json_string(index_json) : json_null());
	json_object_set_new(root, "readme", readme ? json_string(readme) : json_null());
	json_object_set_new(root, "config",
	                    p->o.config_yaml ? json_string(p->o.config_yaml) : json_null());
	char *text = lines_json_text(root, JSON_INDENT(1) | JSON_ENSURE_ASCII);
	json_decref(root);
	RETURN_ERROR_IF(!text, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	*out = text;
	return 0;
}

/* ---- lines stats ----------------------------------------------------------------------------- */
int lines_stats_combine(const char *const *files, size_t n, const char *out,
                        const struct lines_merge_opts *log, struct lines_error *err)
{
	struct lines_error dummy;
	json_t **f = calloc(n ? n : 1, sizeof(*f));
	json_t *root = NULL, *rows = NULL;
	const char *plan = NULL;
	json_int_t M = 0, round = 0, nt = 0, rounds = 0;
	int rc = 0;
	(void)log;
	if (!err)
		err = &dummy;
	RETURN_ERROR_IF(!f, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	if (n == 0) {
		free(f);
		return lines_errf(err, LINES_EUSAGE, NULL, NULL, "no statistics file given");
	}
	for (size_t i = 0; out && strcmp(out, "-") && i < n; i++)
		if (same_file(files[i], out)) {
			free(f);
			return lines_errf(err, LINES_EUSAGE, out, NULL,
			                  "the output is one of the statistics files; refusing to "
			                  "overwrite it");
		}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (!(f[i] = load_json(files[i], "statistics file (JSON)", err))) {
			rc = LINES_EFORMAT;
			break;
		}
		json_t *r = f[i];
		const char *h = json_string_value(json_object_get(r, "plan"));
		json_t *part = json_object_get(r, "part");
		if (json_integer_value(json_object_get(r, "lines_stats")) != STATS_FORMAT || !h ||
		    !json_is_array(json_object_get(r, "results"))) {
			rc = lines_errf(err, LINES_EFORMAT, files[i], NULL, "not a lines statistics file");
			break;
		}
		if (!json_is_integer(part)) {
			rc = lines_errf(err, LINES_EUSAGE, files[i], NULL,
			                "already combined: give the files of the parts");
			break;
		}
		if (i == 0) {
			plan = h;
			M = json_integer_value(json_object_get(r, "parts"));
			round = json_integer_value(json_object_get(r, "round"));
			rounds = json_integer_value(json_object_get(r, "rounds"));
			nt = json_integer_value(json_object_get(r, "ntensors"));
			if (M < 1 || round < 1) {
				rc = lines_errf(err, LINES_EFORMAT, files[i], NULL, "not a lines statistics file");
				break;
			}
			continue;
		}
		if (strcmp(h, plan))
			rc = lines_errf(err, LINES_EUSAGE, files[i], NULL,
			                "statistics of another plan than %s's (other inputs or options)",
			                files[0]);
		else if (json_integer_value(json_object_get(r, "round")) != round)
			rc = lines_errf(err, LINES_EUSAGE, files[i], NULL,
			                "round %lld, and %s is of round %lld: combine one round at a time",
			                (long long)json_integer_value(json_object_get(r, "round")),
			                files[0], (long long)round);
		else if (json_integer_value(json_object_get(r, "parts")) != M)
			rc = lines_errf(err, LINES_EUSAGE, files[i], NULL,
			                "a part of %lld, and %s is a part of %lld", 
			                (long long)json_integer_value(json_object_get(r, "parts")),
			                files[0], (long long)M);
	}
	/* every part once, in order */
	json_t **by = rc == 0 ? calloc((size_t)M, sizeof(*by)) : NULL;
	if (rc == 0 && !by)
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		json_int_t k = json_integer_value(json_object_get(f[i], "part"));
		if (k < 0 || k >= M)
			rc = lines_errf(err, LINES_EFORMAT, files[i], NULL, "part %lld of %lld", (long long)k,
			                (long long)M);
		else if (by[k])
			rc = lines_errf(err, LINES_EUSAGE, files[i], NULL,
			                "part %lld/%lld given twice (and in another file)", (long long)k,
			                (long long)M);
		else
			by[k] = f[i];
	}
	for (json_int_t k = 0; rc == 0 && k < M; k++)
		if (!by[k])
			rc = lines_errf(err, LINES_EUSAGE, NULL, NULL,
			                "the statistics of part %lld/%lld (round %lld) are missing",
			                (long long)k, (long long)M, (long long)round);
	/* the rounds before: the same combined results in every part */
	json_t *prev0 = NULL;
	if (rc == 0) {
		prev0 = json_object_get(by[0], "results");
		if (json_array_size(prev0) != (size_t)round)
			rc = lines_errf(err, LINES_EFORMAT, files[0], NULL, "its rounds do not add up");
	}
	for (json_int_t k = 1; rc == 0 && k < M; k++) {
		json_t *pk = json_object_get(by[k], "results");
		for (json_int_t r = 0; rc == 0 && r + 1 < round; r++)
			if (!json_equal(json_array_get(pk, (size_t)r), json_array_get(prev0, (size_t)r)))
				rc = lines_errf(err, LINES_EUSAGE, NULL, NULL,
				                "parts 0 and %lld were measured from different statistics "
				                "of round %lld",
				                (long long)k, (long long)(r + 1));
	}
	json_int_t at = 0;
	json_t *records = NULL, *totals = NULL;
	json_int_t *counts = NULL;
	size_t ncounts = 0;
	if (rc == 0 && (!(rows = json_array()) || !(records = json_array()) || !(totals = json_array())))
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (json_int_t k = 0; rc == 0 && k < M; k++) {
		json_t *res = json_array_get(json_object_get(by[k], "results"), (size_t)round - 1);
		json_int_t t0 = json_integer_value(json_object_get(res, "t0"));
		json_int_t t1 = json_integer_value(json_object_get(res, "t1"));
		json_t *tr = json_object_get(res, "rows"), *c = json_object_get(res, "counts"), *e;
		json_t *tot = json_object_get(res, "totals");
		size_t i;
		/* integers, added: the counts as [index, n] pairs, the totals */
		json_array_foreach(c, i, e) {
			json_int_t q = json_integer_value(json_array_get(e, 0));
			if (q < 0 || q >= (1 << 26)) {
				rc = lines_errf(err, LINES_EFORMAT, NULL, NULL, "part %lld: a count out of range",
				                (long long)k);
				break;
			}
			if ((size_t)q >= ncounts) {
				size_t nn = (size_t)q + 1 > 2 * ncounts ? (size_t)q + 1 : 2 * ncounts;
				json_int_t *g = realloc(counts, nn * sizeof(*g));
				if (!g) {
					rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
					break;
				}
				memset(g + ncounts, 0, (nn - ncounts) * sizeof(*g));
				counts = g, ncounts = nn;
			}
			counts[q] += json_integer_value(json_array_get(e, 1));
		}
		json_array_foreach(tot, i, e) {
			while (json_array_size(totals) <= i)
				json_array_append_new(totals, json_integer(0));
			json_array_set_new(totals, i,
			                   json_integer(json_integer_value(json_array_get(totals, i)) +
			                                json_integer_value(e)));
		}
		/* in part order: the records, the rows of its tensors */
		if (json_is_array(json_object_get(res, "records")))
			json_array_extend(records, json_object_get(res, "records"));
		if (rc < 0 || (t0 == t1 && json_array_size(tr) == 0))
			continue; /* a part without shards */
		if (t0 != at || t1 < t0 || json_array_size(tr) != (size_t)(t1 - t0)) {
			rc = lines_errf(err, LINES_EFORMAT, NULL, NULL,
			                "part %lld's tensors [%lld, %lld) do not follow the parts before", 
			                (long long)k, (long long)t0, (long long)t1);
			break;
		}
		json_array_extend(rows, tr);
		at = t1;
	}
	if (rc == 0 && at != nt)
		rc = lines_errf(err, LINES_EFORMAT, NULL, NULL, "the parts hold %lld of %lld tensors",
		                (long long)at, (long long)nt);
	if (rc == 0) {
		json_t *results = json_deep_copy(prev0), *res = json_object(), *c = json_array();
		json_t *last = json_array_get(prev0, (size_t)round - 1);
		for (size_t q = 0; q < ncounts; q++)
			if (counts[q]) {
				json_t *pr = json_array();
				json_array_append_new(pr, json_integer((json_int_t)q));
				json_array_append_new(pr, json_integer(counts[q]));
				json_array_append_new(c, pr);
			}
		json_object_set(res, "round", json_object_get(last, "round"));
		json_object_set(res, "kind", json_object_get(last, "kind"));
		json_object_set_new(res, "t0", json_integer(0));
		json_object_set_new(res, "t1", json_integer(nt));
		json_object_set(res, "rows", rows);
		if (json_object_get(last, "counts"))
			json_object_set(res, "counts", c);
		if (json_object_get(last, "totals"))
			json_object_set(res, "totals", totals);
		if (json_object_get(last, "records"))
			json_object_set(res, "records", records);
		json_decref(c);
		json_array_set_new(results, (size_t)round - 1, res);
		root = json_object();
		json_object_set_new(root, "lines_stats", json_integer(STATS_FORMAT));
		json_object_set_new(root, "plan", json_string(plan));
		json_object_set_new(root, "rounds", json_integer(rounds));
		json_object_set_new(root, "round", json_integer(round));
		json_object_set_new(root, "parts", json_integer(M));
		json_object_set_new(root, "part", json_null());
		json_object_set_new(root, "ntensors", json_integer(nt));
		json_object_set_new(root, "results", results);
		rc = put_json(out, root, err);
	}
	free(counts);
	json_decref(records);
	json_decref(totals);
	json_decref(root);
	json_decref(rows);
	free(by);
	for (size_t i = 0; i < n; i++)
		json_decref(f[i]);
	free(f);
	return rc;
}

/* ---- lines index ------------------------------------------------------------------------------- */
/*
 * A part's temporary directory left by a run that was killed: removed
 * when no run holds its lock; a part still running is an error.
 */
static int clean_part_dir(const char *dir, const char *name, struct lines_error *err)
{
	char *path = str_join_path(dir, name);
	int fd, rc = 0;
	RETURN_ERROR_IF(!path, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		free(path);
		return 0;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		rc = lines_errf(err, LINES_EUSAGE, path, NULL,
		                "a part is still being written here: wait for it to finish");
	else
		sink_dir_empty(path);
	if (rc == 0)
		rmdir(path);
	close(fd);
	free(path);
	return rc;
}


static void note(const struct lines_merge_opts *log, const char *file, const char *fmt,
                 const char *arg)
{
	if (log)
		lines_logf(log, LINES_LOG_NOTE, file, NULL, fmt, arg);
}

/* 1 when the first bytes of the shard at PATH are the header the plan
 * file's entry H ({bytes, xxh3}) describes, or when there is no entry
 * (a plan file of an older lines). */
static int header_of_plan(const char *path, const json_t *h)
{
	const char *want = json_string_value(json_object_get(h, "xxh3"));
	json_int_t n = json_integer_value(json_object_get(h, "bytes"));
	char hex[17];
	int fd, same = 0;
	if (!h)
		return 1;
	if (!want || n <= 0 || n > (json_int_t)1 << 31 || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	unsigned char *b = malloc((size_t)n);
	if (b && full_pread(fd, b, (size_t)n, 0) == 0) {
		xxh64_hex(XXH3_64bits(b, (size_t)n), hex);
		same = !strcmp(hex, want);
	}
	free(b);
	close(fd);
	return same;
}

int lines_index(const char *dir, const struct lines_merge_opts *log, struct lines_error *err)
{
	struct lines_error dummy;
	char *pf, *path = NULL;
	json_t *root;
	int rc = 0;
	size_t missing = 0, bad = 0;

	if (!err)
		err = &dummy;
	RETURN_ERROR_IF(!(pf = str_join_path(dir, PLANFILE)), err, LINES_ENOMEM, NULL, NULL, "out of memory");
	if (access(pf, F_OK) < 0) {
		int e = errno;
		char *rd = str_join_path(dir, "README.md");
		int done = rd && access(rd, F_OK) == 0;
		free(rd);
		free(pf);
		if (done) { /* a scheduler may run the last step twice */
			note(log, dir, "%s", "already assembled (no " PLANFILE "): lines verify checks its shards");
			return 0;
		}
		return lines_errno(err, e, dir,
		                   "no " PLANFILE ": not the output of lines merge --part, or no part "
		                   "has finished yet");
	}
	root = load_json(pf, "plan file", err);
	if (!root) {
		free(pf);
		return LINES_EFORMAT;
	}
	json_t *shards = json_object_get(root, "shards"), *heads = json_object_get(root, "headers");
	json_t *index = json_object_get(root, "index"), *readme = json_object_get(root, "readme");
	json_t *config = json_object_get(root, "config");
	if (json_integer_value(json_object_get(root, "lines_plan")) != STATS_FORMAT ||
	    !json_is_array(shards) || !json_array_size(shards) || !json_is_string(readme))
		rc = lines_errf(err, LINES_EFORMAT, pf, NULL, "not a lines plan file");
	/* stale temporary directories of killed parts */
	DIR *dh = rc == 0 ? opendir(dir) : NULL;
	struct dirent *e;
	while (rc == 0 && dh && (e = readdir(dh)))
		if (!strncmp(e->d_name, ".lines-part-", 12))
			rc = clean_part_dir(dir, e->d_name, err);
	if (dh)
		closedir(dh);
	/* every shard, complete and verified */
	for (size_t k = 0; rc == 0 && k < json_array_size(shards); k++) {
		const char *name = json_string_value(json_array_get(shards, k));
		struct lines_verify_opts vo = {0};
		struct lines_verify_result vr = {0};
		struct lines_error ve;
		char *m = NULL;
		free(path);
		path = name ? str_join_path(dir, name) : NULL;
		if (!path || !(m = malloc(strlen(path) + 32))) {
			free(m);
			rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
			break;
		}
		sprintf(m, "%s.manifest.json", path);
		int have = access(path, F_OK) == 0 && access(m, F_OK) == 0;
		sprintf(m, "%s.xxh128", path);
		have = have && access(m, F_OK) == 0;
		free(m);
		if (!have) {
			if (log)
				lines_logf(log, LINES_LOG_WARN, path, NULL,
				           "missing (or its .xxh128 or .manifest.json is): its part has not "
				           "finished");
			missing++;
			continue;
		}
		if (log) {
			vo.log = log->log;
			vo.cb_ctx = log->cb_ctx;
		}
		/* a shard of another run verifies against its own sidecars: its
		 * header must be the one this plan decides */
		int foreign = !header_of_plan(path, json_array_get(heads, k));
		int vr_rc = foreign ? 0 : lines_verify(path, &vo, &vr, &ve);
		if (foreign || vr_rc < 0 || !vr.sidecar_checked || !vr.manifest_checked ||
		    vr.problems) {
			if (log)
				lines_logf(log, LINES_LOG_WARN, path, NULL, "%s%s%s: rerun its part",
				           foreign ? "its header is not this plan's (a shard of another run)"
				                   : "does not verify",
				           vr_rc < 0 ? ": " : "", vr_rc < 0 ? ve.msg : "");
			bad++;
		}
	}
	if (rc == 0 && (missing || bad))
		rc = lines_errf(err, LINES_ECORRUPT, dir, NULL,
		                "%zu of %zu shards missing and %zu not verified: nothing assembled",
		                missing, json_array_size(shards), bad);
	free(path);
	path = NULL;
	/* the files of the whole output, each complete before it appears */
	if (rc == 0 && json_is_string(index) && (path = str_join_path(dir, "model.safetensors.index.json")))
		rc = put_text(path, json_string_value(index), err);
	free(path);
	path = NULL; /* not freed again below when the index could not be written */
	if (rc == 0 && (path = str_join_path(dir, "README.md")))
		rc = put_text(path, json_string_value(readme), err);
	free(path);
	path = NULL;
	if (rc == 0 && json_is_string(config) && (path = str_join_path(dir, "lines_config.yml")))
		rc = put_text(path, json_string_value(config), err);
	free(path);
	if (rc == 0 && unlink(pf) < 0)
		rc = lines_errno(err, errno, pf, "cannot remove");
	if (rc == 0) {
		int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0)
			fsync(fd), close(fd);
		note(log, dir, "assembled: %s", "every shard verified");
	}
	json_decref(root);
	free(pf);
	return rc;
}
