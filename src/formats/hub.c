/*
 * hub.c -- a model named as on the Hugging Face hub ("org/name", or
 * "org/name@revision"), found in the local cache that huggingface_hub
 * fills, without any network access.
 *
 * The cache is $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else
 * $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub (huggingface_hub's order). A model org/name
 * lives in models--org--name/: refs/REV holds the commit a branch or tag
 * points to, and snapshots/COMMIT/ the files of that commit (symbolic
 * links into blobs/). The revision is "main" unless given; a commit hash
 * names its snapshot directly.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hub.h"

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

/* org/name[@rev]: the lengths of org, name and rev (rev 0: none). */
static int parse_id(const char *ref, size_t *org, size_t *name, const char **rev)
{
	const char *slash = strchr(ref, '/'), *at;
	if (!slash || slash == ref)
		return 0;
	*org = (size_t)(slash - ref);
	at = strchr(slash + 1, '@');
	*name = at ? (size_t)(at - slash - 1) : strlen(slash + 1);
	*rev = at ? at + 1 : NULL;
	if (*name == 0 || (at && !*at))
		return 0;
	for (size_t i = 0; i < *org; i++)
		if (!name_char(ref[i]))
			return 0;
	for (size_t i = 0; i < *name; i++)
		if (!name_char(slash[1 + i]))
			return 0;
	if (ref[0] == '.' || slash[1] == '.')
		return 0;
	if (*rev && (strstr(*rev, "..") || (*rev)[0] == '/'))
		return 0;
	for (const char *p = *rev; p && *p; p++)
		if (!name_char(*p) && *p != '/')
			return 0;
	return 1;
}

int hub_is_id(const char *ref)
{
	size_t o, n;
	const char *rev;
	return parse_id(ref, &o, &n, &rev);
}

int hub_is_lora(const char *ref)
{
	const char *plus = strchr(ref, '+');
	if (!plus || plus == ref || !plus[1])
		return 0;
	char *base = strndup(ref, (size_t)(plus - ref));
	struct stat st;
	int yes = base && stat(ref, &st) != 0 && (hub_is_id(base) || stat(base, &st) == 0);
	free(base);
	return yes;
}

/* The cache directory, and what it was taken from. */
static int cache_dir(char *buf, size_t n, const char **from)
{
	const char *v;
	if ((v = getenv("HF_HUB_CACHE")) && *v) {
		*from = "HF_HUB_CACHE";
		return snprintf(buf, n, "%s", v) < (int)n;
	}
	if ((v = getenv("HUGGINGFACE_HUB_CACHE")) && *v) {
		*from = "HUGGINGFACE_HUB_CACHE";
		return snprintf(buf, n, "%s", v) < (int)n;
	}
	if ((v = getenv("HF_HOME")) && *v) {
		*from = "HF_HOME";
		return snprintf(buf, n, "%s/hub", v) < (int)n;
	}
	if ((v = getenv("XDG_CACHE_HOME")) && *v) {
		*from = "XDG_CACHE_HOME";
		return snprintf(buf, n, "%s/huggingface/hub", v) < (int)n;
	}
	*from = "HOME";
	v = getenv("HOME");
	return snprintf(buf, n, "%s/.cache/huggingface/hub", v && *v ? v : "") < (int)n;
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The commit refs/REV names, in buf, or "". */
static void read_ref(const char *repo, const char *rev, char *buf, size_t n)
{
	char path[4400];
	FILE *f;
	buf[0] = '\0';
	if ((size_t)snprintf(path, sizeof(path), "%s/refs/%s", repo, rev) >= sizeof(path) ||
	    !(f = fopen(path, "r")))
		return;
	if (!fgets(buf, (int)n, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, " \t\r\n")] = '\0';
	for (char *p = buf; *p; p++)
		if (!name_char(*p)) { /* a commit hash, nothing else */
			buf[0] = '\0';
			break;
		}
}

int hub_resolve(const char *ref, char **dir, struct lines_error *err)
{
	size_t org, name;
	const char *rev, *from;
	char cache[4096], repo[4400], commit[128], snap[4600];

	*dir = NULL;
	if (!parse_id(ref, &org, &name, &rev))
		return lines_errno(err, ENOENT, ref, "cannot open");
	if (!rev)
		rev = "main";
	RETURN_ERROR_IF(!cache_dir(cache, sizeof(cache), &from), err, LINES_EUSAGE, ref, NULL,
	                "the Hugging Face cache's path is too long");
	snprintf(repo, sizeof(repo), "%s/models--%.*s--%.*s", cache, (int)org, ref, (int)name,
	         ref + org + 1);
	if (!is_dir(repo))
		return lines_errno(err, ENOENT, ref,
		                   "not a file or directory, nor in the Hugging Face cache (no %s; the "
		                   "cache is taken from $%s; lines does not download: fetch the model "
		                   "with huggingface-cli download first)",
		                   repo, from);
	read_ref(repo, rev, commit, sizeof(commit));
	if (commit[0])
		snprintf(snap, sizeof(snap), "%s/snapshots/%s", repo, commit);
	else
		snprintf(snap, sizeof(snap), "%s/snapshots/%s", repo, rev);
	if (!is_dir(snap))
		return lines_errno(err, ENOENT, ref,
		                   "revision '%s' is not in the Hugging Face cache: looked for "
		                   "%s/refs/%s (a branch or tag) and %s (%s)",
		                   rev, repo, rev, snap,
		                   commit[0] ? "the commit it names" : "a commit of that name");
	*dir = strdup(snap);
	RETURN_ERROR_IF(!*dir, err, LINES_ENOMEM, ref, NULL, "out of memory");
	return 0;
}
