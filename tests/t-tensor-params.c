/*
 * t-tensor-params.c -- TIES with a weight and a density per model per
 * tensor, as mergekit's examples/ties.yml gives them (a density
 * gradient, a weight gradient, weight filters; normalize; per-tensor
 * trim), against a float64 reference written here, on BF16, F16 and F32
 * Llama families; and the same within slices (a weight per slice, a
 * source's density gradient).
 *
 * The configuration runs unchanged: its hub ids are found in a Hugging
 * Face cache made here. The test computes each tensor's values itself
 * from mergekit's rule (the gradient at t = i / (L - 1) of the block's
 * place in its stack or slice, 0 outside the blocks; the first matching
 * filter), checks that the manifest has them, then for every tensor the
 * k-th smallest |w_i tau_i| by sorting (k = n - floor(n rho_i)), the
 * elected signs, the model's majority sign (which breaks zero sums: the
 * reason a per-tensor merge is not a concatenation of whole-model merges
 * with constant values), and every output element within one ULP of
 * theta_0 + sum{kept, agreeing w_i tau_i} / sum{their w_i}.
 *
 * task_arithmetic (sum, and mean with normalize: true) with weight
 * gradients and LiNeS: automatic alpha from the norm pass against the
 * test's norms, and every element.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tutil.h"

#define NM 3

static uint32_t mag(float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	return u & 0x7fffffffu;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* mergekit's gradient: s = t (n - 1), i0 = floor(s), the last at t = 1 */
static double grad(const double *g, size_t n, double t)
{
	double s = t * (double)(n - 1);
	size_t i0 = (size_t)s;
	if (i0 >= n - 1)
		return g[n - 1];
	double f = s - (double)i0;
	return (1 - f) * g[i0] + f * g[i0 + 1];
}

/* ties.yml's values for a tensor at layer position t */
static void ties_yml(const char *name, long block, long L, double *w, double *d)
{
	static const double dg[] = {1, 0.7, 0.1}, wg[] = {0, 0.3, 0.7, 1};
	double t = block < 0 ? 0.0 : L <= 1 ? 1.0 : (double)block / (double)(L - 1);
	w[0] = 1.0, d[0] = grad(dg, 3, t);
	w[1] = grad(wg, 4, t), d[1] = 0.5;
	w[2] = strstr(name, "mlp") ? 0.5 : 0.0, d[2] = 0.33;
}

/* the slices' configuration (written below): slice 0 is blocks 0-1
 * (with the embeddings), slice 1 blocks 2-3 (with the norm and head) */
static void slices_yml(const char *name, long block, long L, double *w, double *d)
{
	static const double dg[] = {0.3, 0.9}, wg[] = {0.8, 0.4};
	(void)L;
	int s = block < 0 ? !strstr(name, "embed") : block >= 2;
	double t = block < 0 ? 0.0 : (double)(block - 2 * s); /* 2 blocks per slice */
	d[0] = 0.5;
	d[1] = s ? 0.5 : grad(dg, 2, t);
	w[0] = w[1] = s ? grad(wg, 2, t) : 0.2;
	w[2] = d[2] = 0;
}

struct fam {
	char dir[4200];
	struct tu_model base, ft[NM];
	unsigned nm;
};

static float tauw(const struct fam *f, size_t ti, unsigned i, uint64_t e, const double *w)
{
	const struct tu_tensor *b = &f->base.t[ti];
	const struct tu_tensor *x = tu_model_find(&f->ft[i], b->name);
	float tau = tu_elem(x, e) - tu_elem(b, e);
	return w[i] == 1.0 ? tau : (float)(w[i] * (double)tau);
}

static uint32_t kth(uint32_t *v, uint64_t d, double rho)
{
	uint64_t m = (uint64_t)floor((double)d * rho), k = d - m;
	if (k == 0)
		return 0;
	qsort(v, d, sizeof(*v), cmp_u32);
	return v[k - 1];
}

/* the disjoint mean over the sum of the agreeing weights (0 -> 1) */
static double elect(const float *t, const uint32_t *thr, const double *w, unsigned nm, int maj,
                    int *sign)
{
	double s = 0, sum = 0, div = 0;
	for (unsigned i = 0; i < nm; i++)
		if (t[i] != 0 && mag(t[i]) >= thr[i])
			s += t[i];
	*sign = s > 0 ? 1 : s < 0 ? -1 : 0;
	int e = *sign ? *sign : maj;
	for (unsigned i = 0; i < nm; i++)
		if (t[i] != 0 && mag(t[i]) >= thr[i] && (t[i] > 0) == (e > 0))
			sum += t[i], div += w[i];
	return sum / (div != 0 ? div : 1.0);
}

static json_t *entry_of(json_t *tensors, const char *name)
{
	for (size_t k = 0; k < json_array_size(tensors); k++) {
		json_t *e = json_array_get(tensors, k);
		if (!strcmp(json_string_value(json_object_get(e, "name")), name))
			return e;
	}
	return NULL;
}

/* Run CFG into OUT and check it against the reference with the values
 * VALUES gives; with LINES, CFG has lines: {alpha: auto} (LiNeS, automatic
 * alpha = ||sum_i tau_i||_1 / (N ||tau_MTL||_1), beta = 1 - alpha). */
static void check_case(const char *label, struct fam *f, const char *cfg, const char *out,
                       void (*values)(const char *, long, long, double *, double *), int lines)
{
	size_t nt = f->base.n;
	long L = 0;
	for (size_t ti = 0; ti < nt; ti++)
		L = tu_block_of(f->base.t[ti].name) + 1 > L ? tu_block_of(f->base.t[ti].name) + 1
		                                            : L;
	int rc = tu_run("'%s' merge -q --config '%s' -o '%s'", tu_lines(), cfg, out);
	if (!ok(rc == 0, "%s: lines exits 0", label)) {
		diag("%s", tu_stderr);
		return;
	}
	char mpath[4500];
	snprintf(mpath, sizeof(mpath), "%s.manifest.json", out);
	json_t *man = json_load_file(mpath, 0, NULL);
	json_t *tensors = json_object_get(man, "tensors");
	double(*w)[NM] = calloc(nt, sizeof(*w)), (*d)[NM] = calloc(nt, sizeof(*d));
	uint32_t(*thr)[NM] = calloc(nt, sizeof(*thr));
	int vals_ok = 1;
	size_t nvals = 0;
	unsigned nm = f->nm;

	/* the values: the test's, and the manifest's */
	for (size_t ti = 0; ti < nt; ti++) {
		const struct tu_tensor *b = &f->base.t[ti];
		if (!tu_is_float(b))
			continue;
		values(b->name, tu_block_of(b->name), L, w[ti], d[ti]);
		json_t *e = entry_of(tensors, b->name);
		json_t *jw = json_object_get(e, "weights"), *jd = json_object_get(e, "densities");
		int same = json_array_size(jw) == nm && json_array_size(jd) == nm;
		for (unsigned i = 0; same && i < nm; i++)
			same = json_number_value(json_array_get(jw, i)) == w[ti][i] &&
			       json_number_value(json_array_get(jd, i)) == d[ti][i];
		if (!same && vals_ok)
			diag("%s: not the weights and densities of the formula", b->name);
		vals_ok &= same;
		nvals++;
	}
	ok(vals_ok && nvals > 30,
	   "%s: the manifest's weights and densities of all %zu tensors are mergekit's", label,
	   nvals);

	/* per-tensor thresholds by sorting */
	int thr_ok = 1;
	for (size_t ti = 0; ti < nt; ti++) {
		const struct tu_tensor *b = &f->base.t[ti];
		if (!tu_is_float(b))
			continue;
		uint32_t *v = malloc(b->nelem * sizeof(*v));
		json_t *e = entry_of(tensors, b->name);
		for (unsigned i = 0; i < nm; i++) {
			for (uint64_t q = 0; q < b->nelem; q++)
				v[q] = mag(tauw(f, ti, i, q, w[ti]));
			thr[ti][i] = kth(v, b->nelem, d[ti][i]);
			float got = (float)json_number_value(
			    json_array_get(json_object_get(e, "ties_thresholds"), i));
			thr_ok &= mag(got) == thr[ti][i];
		}
		free(v);
	}
	ok(thr_ok, "%s: every tensor's thresholds are the k-th smallest |w tau| with its densities",
	   label);

	/* the majority sign over the whole model */
	long votes = 0;
	for (size_t ti = 0; ti < nt; ti++) {
		if (!tu_is_float(&f->base.t[ti]))
			continue;
		for (uint64_t q = 0; q < f->base.t[ti].nelem; q++) {
			float t[NM];
			int sign;
			for (unsigned i = 0; i < nm; i++)
				t[i] = tauw(f, ti, i, q, w[ti]);
			elect(t, thr[ti], w[ti], nm, 1, &sign);
			votes += sign;
		}
	}
	int maj = votes >= 0 ? 1 : -1;
	json_t *tj = json_object_get(json_object_get(man, "run"), "ties");
	ok(json_integer_value(json_object_get(tj, "majority")) == maj,
	   "%s: the majority sign is %+d", label, maj);
	double alpha = 1, beta = 0;
	if (lines) {
		double num = 0, den = 0;
		for (size_t ti = 0; ti < nt; ti++) {
			const struct tu_tensor *b = &f->base.t[ti];
			if (!tu_is_float(b))
				continue;
			for (uint64_t q = 0; q < b->nelem; q++) {
				float t[NM];
				double raw = 0;
				int sign;
				for (unsigned i = 0; i < nm; i++) {
					t[i] = tauw(f, ti, i, q, w[ti]);
					raw +=
					    (double)(tu_elem(tu_model_find(&f->ft[i], b->name), q) -
					             tu_elem(b, q));
				}
				num += fabs(raw);
				den += fabs(elect(t, thr[ti], w[ti], nm, maj, &sign));
			}
		}
		alpha = num / (nm * den), beta = fmax(0, 1 - alpha);
		double got = json_real_value(json_object_get(json_object_get(man, "run"), "alpha"));
		ok(fabs(got - alpha) <= 1e-12 * alpha,
		   "%s: alpha %.17g = ||sum tau|| / (N ||tau_MTL||) = %.17g", label, got, alpha);
	}

	/* every element */
	struct tu_model om;
	uint64_t bad = 0, n = 0, zeros = 0;
	char first[512] = "";
	if (tu_model_load(&om, out) == 0) {
		for (size_t ti = 0; ti < nt; ti++) {
			const struct tu_tensor *b = &f->base.t[ti],
			                       *o = tu_model_find(&om, b->name);
			if (!tu_is_float(b))
				continue;
			long blk = tu_block_of(b->name);
			double lam = !lines    ? 1.0
			             : blk < 0 ? alpha
			                       : alpha + beta * blk / (double)(L - 1);
			for (uint64_t q = 0; q < b->nelem; q++) {
				float t[NM];
				int sign;
				for (unsigned i = 0; i < nm; i++)
					t[i] = tauw(f, ti, i, q, w[ti]);
				double m = elect(t, thr[ti], w[ti], nm, maj, &sign) * lam;
				double ref = tu_elem(b, q) + m, got = tu_elem(o, q);
				double tol = tu_ulp(o->dtype, ref) +
				             0x1p-48 * (fabs(tu_elem(b, q)) + fabs(m));
				zeros += !sign && m != 0;
				n++;
				if (!(fabs(got - ref) <= tol) && !bad++)
					snprintf(first, sizeof(first),
					         "%s[%llu]: got %.9g, reference %.17g", b->name,
					         (unsigned long long)q, got, ref);
			}
		}
		tu_model_free(&om);
	}
	if (!ok(bad == 0 && n > 0,
	        "%s: %llu elements within 1 ULP of the reference (%llu zero sums "
	        "the majority decides)",
	        label, (unsigned long long)n, (unsigned long long)zeros))
		diag("%llu bad, first %s", (unsigned long long)bad, first);
	json_decref(man);
	free(w), free(d), free(thr);
}

/*
 * task_arithmetic with weight gradients and LiNeS (lines: alpha: auto):
 * a sum, or with MEAN (normalize: true) each tensor over the sum of its
 * own weights; automatic alpha = ||sum_i tau_i||_1 / (N ||tau_MTL||_1)
 * from a norm pass (no closed form with weights per tensor), then every
 * element theta_0 + lambda(block) tau_MTL within 1 ULP.
 */
static void ta_weights(const char *name, long block, long L, double *w, double *d)
{
	static const double g0[] = {0.2, 1.0}, g1[] = {1, 0.5, 0};
	double t = block < 0 ? 0.0 : (double)block / (double)(L - 1);
	w[0] = grad(g0, 2, t);
	w[1] = strstr(name, "self_attn") ? grad(g1, 3, t) : 0.7;
	d[0] = d[1] = 0;
}

static void ta_case(struct fam *f, int mean)
{
	char cfg[4400], out[4400], text[20000];
	const char *label =
	    mean ? "task_arithmetic, normalize: true, LiNeS" : "task_arithmetic, LiNeS";
	size_t nt = f->base.n;
	long L = 0;
	for (size_t ti = 0; ti < nt; ti++)
		L = tu_block_of(f->base.t[ti].name) + 1 > L ? tu_block_of(f->base.t[ti].name) + 1
		                                            : L;
	snprintf(cfg, sizeof(cfg), "%s/ta%d.yml", tu_tmpdir(), mean);
	snprintf(out, sizeof(out), "%s/ta%d.safetensors", tu_tmpdir(), mean);
	snprintf(text, sizeof(text),
	         "merge_method: task_arithmetic\n"
	         "base_model: %s/base.safetensors\n"
	         "models:\n"
	         "  - model: %s/ft1.safetensors\n"
	         "    parameters: {weight: [0.2, 1.0]}\n"
	         "  - model: %s/ft2.safetensors\n"
	         "    parameters:\n"
	         "      weight: [{filter: self_attn, value: [1, 0.5, 0]}, {value: 0.7}]\n"
	         "parameters: {normalize: %s}\n"
	         "lines: {alpha: auto}\n",
	         f->dir, f->dir, f->dir, mean ? "true" : "false");
	if (tu_write_file(cfg, text, strlen(text)) != 0 ||
	    !ok(tu_run("'%s' merge -q --config '%s' -o '%s'", tu_lines(), cfg, out) == 0,
	        "%s: lines exits 0", label)) {
		diag("%s", tu_stderr);
		return;
	}
	double num = 0, den = 0, (*w)[NM] = calloc(nt, sizeof(*w)), dd[NM];
	for (size_t ti = 0; ti < nt; ti++) {
		const struct tu_tensor *b = &f->base.t[ti];
		if (!tu_is_float(b))
			continue;
		ta_weights(b->name, tu_block_of(b->name), L, w[ti], dd);
		double ws = mean ? w[ti][0] + w[ti][1] : 1.0;
		for (uint64_t q = 0; q < b->nelem; q++) {
			double s = 0, m = 0;
			for (unsigned i = 0; i < 2; i++) {
				float tau =
				    tu_elem(tu_model_find(&f->ft[i], b->name), q) - tu_elem(b, q);
				s += tau, m += w[ti][i] * tau;
			}
			num += fabs(s), den += fabs(m / ws);
		}
	}
	double alpha = num / (2 * den), beta = fmax(0, 1 - alpha);
	char mpath[4500];
	snprintf(mpath, sizeof(mpath), "%s.manifest.json", out);
	json_t *man = json_load_file(mpath, 0, NULL);
	double got_alpha = json_real_value(json_object_get(json_object_get(man, "run"), "alpha"));
	ok(fabs(got_alpha - alpha) <= 1e-12 * alpha,
	   "%s: alpha %.17g = ||sum tau|| / (N ||tau_MTL||) = %.17g (weights per tensor)", label,
	   got_alpha, alpha);
	struct tu_model om;
	uint64_t bad = 0, n = 0;
	char first[512] = "";
	if (tu_model_load(&om, out) == 0) {
		for (size_t ti = 0; ti < nt; ti++) {
			const struct tu_tensor *b = &f->base.t[ti],
			                       *o = tu_model_find(&om, b->name);
			if (!tu_is_float(b))
				continue;
			long blk = tu_block_of(b->name);
			double lam = blk < 0 ? alpha : alpha + beta * blk / (double)(L - 1);
			double ws = mean ? w[ti][0] + w[ti][1] : 1.0;
			for (uint64_t q = 0; q < b->nelem; q++) {
				double m = 0;
				for (unsigned i = 0; i < 2; i++) {
					float tau = tu_elem(tu_model_find(&f->ft[i], b->name), q) -
					            tu_elem(b, q);
					m += w[ti][i] * tau;
				}
				m /= ws;
				double ref = tu_elem(b, q) + lam * m, got = tu_elem(o, q);
				double tol = tu_ulp(o->dtype, ref) +
				             0x1p-48 * (fabs(tu_elem(b, q)) + fabs(lam * m));
				n++;
				if (!(fabs(got - ref) <= tol) && !bad++)
					snprintf(first, sizeof(first),
					         "%s[%llu]: got %.9g, reference %.17g", b->name,
					         (unsigned long long)q, got, ref);
			}
		}
		tu_model_free(&om);
	}
	if (!ok(bad == 0 && n > 0, "%s: %llu elements within 1 ULP of the reference", label,
	        (unsigned long long)n))
		diag("%llu bad, first %s", (unsigned long long)bad, first);
	json_decref(man);
	free(w);
}

/* the Hugging Face cache's snapshot of ID is a directory holding FILE as
 * model.safetensors */
static int hub(const char *id, const char *file)
{
	char repo[4400];
	const char *slash = strchr(id, '/');
	snprintf(repo, sizeof(repo), "%s/hub/models--%.*s--%s", tu_tmpdir(), (int)(slash - id), id,
	         slash + 1);
	return tu_run("rm -rf '%s' && mkdir -p '%s/refs' '%s/snapshots/0123456789abcdef' && "
	              "echo 0123456789abcdef >'%s/refs/main' && "
	              "ln -s '%s' '%s/snapshots/0123456789abcdef/model.safetensors'",
	              repo, repo, repo, repo, file, repo);
}

static int load(struct fam *f, unsigned nm)
{
	char p[4400];
	int good = 1;
	f->nm = nm;
	snprintf(p, sizeof(p), "%s/base.safetensors", f->dir);
	good &= tu_model_load(&f->base, p) == 0;
	for (unsigned i = 0; i < nm; i++) {
		snprintf(p, sizeof(p), "%s/ft%u.safetensors", f->dir, i + 1);
		good &= tu_model_load(&f->ft[i], p) == 0;
	}
	return good;
}

static void unload(struct fam *f)
{
	tu_model_free(&f->base);
	for (unsigned i = 0; i < f->nm; i++)
		tu_model_free(&f->ft[i]);
}

/* mergekit's examples/ties.yml, verbatim: arcee-ai/mergekit, commit
 * a6e402884ba9bc30da7f23e8304a35f19485de95, examples/ties.yml (mergekit
 * is licensed under the GNU Lesser General Public License, version 3
 * only, LGPL-3.0-only; this copy stays under it) */
static const char ties_yml_text[] = "models:\n"
                                    "  - model: psmathur/orca_mini_v3_13b\n"
                                    "    parameters:\n"
                                    "      density: [1, 0.7, 0.1] # density gradient\n"
                                    "      weight: 1.0\n"
                                    "  - model: garage-bAInd/Platypus2-13B\n"
                                    "    parameters:\n"
                                    "      density: 0.5\n"
                                    "      weight: [0, 0.3, 0.7, 1] # weight gradient\n"
                                    "  - model: WizardLM/WizardMath-13B-V1.0\n"
                                    "    parameters:\n"
                                    "      density: 0.33\n"
                                    "      weight:\n"
                                    "        - filter: mlp\n"
                                    "          value: 0.5\n"
                                    "        - value: 0\n"
                                    "merge_method: ties\n"
                                    "base_model: TheBloke/Llama-2-13B-fp16\n"
                                    "parameters:\n"
                                    "  normalize: true\n"
                                    "  int8_mask: true\n"
                                    "dtype: float16\n";

int main(void)
{
	static const char *const dts[] = {"bf16", "f16", "f32"};
	char cfg[4400], out[4400], label[64], p[4400], text[40000];
	snprintf(p, sizeof(p), "%s/hub", tu_tmpdir());
	setenv("HF_HUB_CACHE", p, 1);
	snprintf(cfg, sizeof(cfg), "%s/ties.yml", tu_tmpdir());
	if (tu_write_file(cfg, ties_yml_text, strlen(ties_yml_text)) != 0)
		return 99;

	for (int k = 0; k < 3; k++) {
		struct fam f = {"", {0}, {{0}}, NM};
		snprintf(f.dir, sizeof(f.dir), "%s/fam-%s", tu_tmpdir(), dts[k]);
		if (tu_run(
		        "'%s' --arch llama --dtype %s --layers 4 --hidden 32 --models 3 --seed %d "
		        "--out '%s'",
		        tu_gen(), dts[k], 31 + k, f.dir) != 0)
			return 99;
		static const char *const ids[] = {
		    "TheBloke/Llama-2-13B-fp16", "psmathur/orca_mini_v3_13b",
		    "garage-bAInd/Platypus2-13B", "WizardLM/WizardMath-13B-V1.0"};
		for (int i = 0; i < 4; i++) {
			static const char *const files[] = {"base", "ft1", "ft2", "ft3"};
			snprintf(p, sizeof(p), "%s/%s.safetensors", f.dir, files[i]);
			if (hub(ids[i], p) != 0)
				return 99;
		}
		if (!load(&f, NM))
			return 99;
		snprintf(out, sizeof(out), "%s/ties-%s.safetensors", tu_tmpdir(), dts[k]);
		snprintf(label, sizeof(label), "ties.yml, %s", dts[k]);
		check_case(label, &f, cfg, out, ties_yml, 0);
		if (k == 0) { /* ties.yml and LiNeS on top (lines' extension) */
			snprintf(text, sizeof(text), "%slines:\n  alpha: auto\n", ties_yml_text);
			snprintf(p, sizeof(p), "%s/ties-lines.yml", tu_tmpdir());
			if (tu_write_file(p, text, strlen(text)) != 0)
				return 99;
			snprintf(out, sizeof(out), "%s/ties-lines.safetensors", tu_tmpdir());
			check_case("ties.yml with lines: alpha: auto, bf16", &f, p, out, ties_yml,
			           1);
		}

		if (k == 0) { /* within slices: a weight per slice, a source's density gradient */
			snprintf(p, sizeof(p), "%s/slices.yml", tu_tmpdir());
			const char *d = f.dir;
			snprintf(text, sizeof(text),
			         "merge_method: ties\n"
			         "base_model: %s/base.safetensors\n"
			         "slices:\n"
			         "  - sources:\n"
			         "      - {model: %s/base.safetensors, layer_range: [0, 2]}\n"
			         "      - {model: %s/ft1.safetensors, layer_range: [0, 2]}\n"
			         "      - model: %s/ft2.safetensors\n"
			         "        layer_range: [0, 2]\n"
			         "        parameters: {density: [0.3, 0.9]}\n"
			         "    parameters: {weight: 0.2}\n"
			         "  - sources:\n"
			         "      - {model: %s/base.safetensors, layer_range: [2, 4]}\n"
			         "      - {model: %s/ft1.safetensors, layer_range: [2, 4]}\n"
			         "      - {model: %s/ft2.safetensors, layer_range: [2, 4]}\n"
			         "    parameters: {weight: [0.8, 0.4]}\n"
			         "parameters:\n"
			         "  density: 0.5\n",
			         d, d, d, d, d, d, d);
			if (tu_write_file(p, text, strlen(text)) != 0)
				return 99;
			f.nm = 2;
			snprintf(out, sizeof(out), "%s/slices.safetensors", tu_tmpdir());
			check_case("ties within slices, bf16", &f, p, out, slices_yml, 0);
			f.nm = NM;
			ta_case(&f, 0);
			ta_case(&f, 1);
		}
		unload(&f);
	}
	tu_cleanup();
	return tap_done();
}
