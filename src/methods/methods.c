/*
 * methods.c -- the table of merge methods, indexed by enum lines_method
 * (as zstd picks a block compressor by strategy). The only place that
 * lists them.
 */
#include "config.h"

#include <string.h>

#include "method.h"

/* One per merge_*.c. */
extern const struct method method_sum, method_mean, method_ties, method_dare, method_linear,
	method_nearswap, method_consensus, method_slerp, method_nuslerp, method_model_stock,
	method_ram, method_ramplus_tl, method_multislerp, method_karcher, method_della,
	method_della_linear, method_breadcrumbs, method_breadcrumbs_ties, method_sce,
	method_passthrough, method_arcee_fusion;

static const struct method *const methods[] = {
	[LINES_M_SUM] = &method_sum,
	[LINES_M_MEAN] = &method_mean,
	[LINES_M_TIES] = &method_ties,
	[LINES_M_DARE] = &method_dare,
	[LINES_M_LINEAR] = &method_linear,
	[LINES_M_NEARSWAP] = &method_nearswap,
	[LINES_M_CONSENSUS] = &method_consensus,
	[LINES_M_SLERP] = &method_slerp,
	[LINES_M_NUSLERP] = &method_nuslerp,
	[LINES_M_MODEL_STOCK] = &method_model_stock,
	[LINES_M_RAM] = &method_ram,
	[LINES_M_RAMPLUS_TL] = &method_ramplus_tl,
	[LINES_M_MULTISLERP] = &method_multislerp,
	[LINES_M_KARCHER] = &method_karcher,
	[LINES_M_DELLA] = &method_della,
	[LINES_M_DELLA_LINEAR] = &method_della_linear,
	[LINES_M_BREADCRUMBS] = &method_breadcrumbs,
	[LINES_M_BREADCRUMBS_TIES] = &method_breadcrumbs_ties,
	[LINES_M_SCE] = &method_sce,
	[LINES_M_PASSTHROUGH] = &method_passthrough,
	[LINES_M_ARCEE_FUSION] = &method_arcee_fusion,
};

/* Other names of a method (mergekit's), parsed but never shown: the
 * output, the manifest and the plan name the method as the table does. */
static const struct {
	const char *alias;
	enum lines_method m;
	int elect; /* dare: -1 leaves dare_elect alone, else sets it */
} aliases[] = {
	{"task_arithmetic", LINES_M_SUM, -1},
	{"dare_linear", LINES_M_DARE, 0},
	{"dare_ties", LINES_M_DARE, 1},
};

const struct method *method_get(enum lines_method m)
{
	return (unsigned)m < ARRAY_SIZE(methods) ? methods[m] : NULL;
}

const struct method *method_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(methods); i++)
		if (methods[i] && !strcmp(methods[i]->name, name))
			return methods[i];
	return NULL;
}

int lines_method_parse(const char *name, enum lines_method *m)
{
	for (size_t i = 0; i < ARRAY_SIZE(methods); i++)
		if (methods[i] && !strcmp(methods[i]->name, name)) {
			*m = (enum lines_method)i;
			return 0;
		}
	for (size_t i = 0; i < ARRAY_SIZE(aliases); i++)
		if (!strcmp(aliases[i].alias, name)) {
			*m = aliases[i].m;
			return 0;
		}
	return -1;
}

int lines_method_select(struct lines_merge_opts *o, const char *name)
{
	if (lines_method_parse(name, &o->method) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(aliases); i++)
		if (!strcmp(aliases[i].alias, name) && aliases[i].elect >= 0)
			o->dare_elect = aliases[i].elect;
	return 0;
}

const char *lines_method_name(enum lines_method m)
{
	const struct method *me = method_get(m);
	return me ? me->name : NULL;
}

unsigned lines_method_options(enum lines_method m)
{
	const struct method *me = method_get(m);
	return me ? me->flags & METHOD_MOPTS : 0;
}
