/*
 * tok_source.c -- --tokenizer-source MODEL (mergekit's tokenizer_source:
 * MODEL): a directory output gets that model's tokenizer files instead of
 * the base's.
 *
 * lines merges tensors row for row, so the tokenizer written must name
 * the rows the output has: the base's. Another model's tokenizer is
 * taken only when its vocabulary is the base's -- a model that added
 * chat tokens to the same vocabulary and rows, or that only changed its
 * chat template -- which is checked before anything is read: every
 * embedding and output head it has must have the base's rows, and where
 * both have a tokenizer.json (vocab.json) the tokens and their ids must be
 * the same. A different vocabulary is refused: mergekit rebuilds the
 * embeddings for it (its "union" and token surgery); lines does not.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "ckpt.h"
#include "output.h"
#include "plan.h"

int output_is_tokenizer_file(const char *name)
{
	static const char *const names[] = {"special_tokens_map.json",
	                                    "added_tokens.json",
	                                    "vocab.json",
	                                    "vocab.txt",
	                                    "merges.txt",
	                                    "spiece.model",
	                                    "sentencepiece.bpe.model",
	                                    "chat_template.jinja",
	                                    "chat_template.json"};
	if (!strncmp(name, "tokenizer", 9)) /* tokenizer.json, tokenizer_config.json, .model */
		return 1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(name, names[i]))
			return 1;
	return 0;
}

static char *path_in(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static int exists_in(const char *dir, const char *name)
{
	struct stat st;
	char *p = dir ? path_in(dir, name) : NULL;
	int r = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
	free(p);
	return r;
}

/* How many tokens a vocabulary holds: an object's keys, an array's items. */
static size_t count(const json_t *v)
{
	return json_is_object(v) ? json_object_size(v) : json_is_array(v) ? json_array_size(v) : 0;
}

/* added_tokens as (id, content) pairs: the rest (lstrip, normalized, ...)
 * says how a token is matched, not which it is. */
static int same_added(const json_t *a, const json_t *b)
{
	if (!a || !b)
		return !a && !b;
	if (json_array_size(a) != json_array_size(b))
		return 0;
	for (size_t i = 0; i < json_array_size(a); i++) {
		const json_t *x = json_array_get(a, i), *y = json_array_get(b, i);
		if (!json_equal(json_object_get(x, "id"), json_object_get(y, "id")) ||
		    !json_equal(json_object_get(x, "content"), json_object_get(y, "content")))
			return 0;
	}
	return 1;
}

/* NAME (tokenizer.json or vocab.json) in both directories: the same
 * tokens, or LINES_EMISMATCH naming the file. */
static int same_vocab(const char *base_dir, const char *dir, const char *name,
                      struct lines_error *err)
{
	char *pa = path_in(base_dir, name), *pb = path_in(dir, name);
	json_error_t je;
	json_t *a = NULL, *b = NULL;
	int rc = 0;
	if (!pa || !pb) {
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		goto out;
	}
	if (!(a = json_load_file(pa, 0, &je))) {
		rc = lines_errf(err, LINES_EFORMAT, pa, NULL, "line %d: not valid JSON (%s)",
		                je.line, je.text);
		goto out;
	}
	if (!(b = json_load_file(pb, 0, &je))) {
		rc = lines_errf(err, LINES_EFORMAT, pb, NULL, "line %d: not valid JSON (%s)",
		                je.line, je.text);
		goto out;
	}
	int tj = !strcmp(name, "tokenizer.json");
	const json_t *va = tj ? json_object_get(json_object_get(a, "model"), "vocab") : a;
	const json_t *vb = tj ? json_object_get(json_object_get(b, "model"), "vocab") : b;
	if ((va || vb) && !json_equal(va, vb)) /* neither has one: nothing to compare */
		rc = lines_errf(err, LINES_EMISMATCH, pb, NULL,
		                "its vocabulary (%zu tokens) is not the base's (%zu tokens in %s): "
		                "lines writes the base's rows and copies a tokenizer only when it "
		                "names them; it does not rebuild embeddings for another vocabulary "
		                "(mergekit's union and token surgery): use the base's tokenizer "
		                "(tokenizer_source: base)",
		                count(vb), count(va), pa);
	else if (tj && !same_added(json_object_get(a, "added_tokens"),
	                           json_object_get(b, "added_tokens")))
		rc = lines_errf(
		    err, LINES_EMISMATCH, pb, NULL,
		    "its added tokens (%zu) are not the base's (%zu in %s): the rows they "
		    "name differ; use the base's tokenizer (tokenizer_source: base), or "
		    "a model whose added tokens are the base's",
		    json_array_size(json_object_get(b, "added_tokens")),
		    json_array_size(json_object_get(a, "added_tokens")), pa);
out:
	json_decref(a);
	json_decref(b);
	free(pa);
	free(pb);
	return rc;
}

int output_tokenizer(struct plan *p, struct lines_error *err)
{
	const char *src = p->o.tokenizer_source;
	const struct ckpt *b = p->in.ck[0];
	struct ckpt *c = NULL;
	int rc;

	if (!src)
		return 0;
	RETURN_ERROR_IF(!p->out.dir, err, LINES_EUSAGE, src, NULL,
	                "a tokenizer source applies to a directory output (-o DIR/), where the "
	                "tokenizer files go: a single safetensors file has none");
	FORWARD_IF_ERROR(ckpt_open(&c, src, &p->layers, err));
	if (!c->dir) {
		ckpt_close(c);
		return lines_errf(
		    err, LINES_EUSAGE, src, NULL,
		    "a single file has no tokenizer files: name the model's directory");
	}
	/* the rows: every embedding and head of the source has the base's */
	for (size_t i = 0; i < b->ntensors; i++) {
		const struct ckpt_tensor *bt = &b->t[i], *ct = ckpt_find(c, bt->name);
		if (!ct || !plan_is_vocab_name(bt->name) || !bt->rank || !ct->rank ||
		    ct->shape[0] == bt->shape[0])
			continue;
		rc = lines_errf(
		    err, LINES_EMISMATCH, src, bt->name,
		    "%llu rows where the base has %llu: its vocabulary is not the base's; "
		    "lines copies a tokenizer only for the base's rows and does not "
		    "rebuild embeddings for another vocabulary (mergekit's union and token "
		    "surgery): use the base's tokenizer (tokenizer_source: base)",
		    (unsigned long long)ct->shape[0], (unsigned long long)bt->shape[0]);
		ckpt_close(c);
		return rc;
	}
	int any = 0;
	static const char *const files[] = {"tokenizer.json", "tokenizer.model",
	                                    "vocab.json",     "vocab.txt",
	                                    "spiece.model",   "tokenizer_config.json"};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		any |= exists_in(c->dir, files[i]);
	if (!any) {
		rc = lines_errf(
		    err, LINES_EUSAGE, c->dir, NULL,
		    "no tokenizer files here (tokenizer.json, tokenizer.model, vocab.json, "
		    "...): nothing to take the tokenizer from");
		ckpt_close(c);
		return rc;
	}
	/* the tokens, where both say them in a form lines reads */
	static const char *const vocabs[] = {"tokenizer.json", "vocab.json"};
	for (size_t i = 0; i < 2; i++)
		if (b->dir && exists_in(b->dir, vocabs[i]) && exists_in(c->dir, vocabs[i]) &&
		    (rc = same_vocab(b->dir, c->dir, vocabs[i], err)) < 0) {
			ckpt_close(c);
			return rc;
		}
	p->tok_dir = strdup(c->dir);
	ckpt_close(c);
	RETURN_ERROR_IF(!p->tok_dir, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	return 0;
}
