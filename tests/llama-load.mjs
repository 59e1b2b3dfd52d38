// llama-load.mjs -- what llama.cpp and @huggingface/gguf make of a GGUF
// file lines wrote (tests/t-llama.sh).
//
//   node llama-load.mjs parse OUT BASE LINES_META.json
//       @huggingface/gguf parses OUT and BASE; OUT's metadata must be
//       BASE's (every key, type and value; general.file_type may name the
//       output's type) plus keys lines.*, whose values must be those
//       `lines inspect --json OUT` shows (LINES_META.json, .metadata).
//   node llama-load.mjs generate OUT
//       llama.cpp (node-llama-cpp's prebuilt CPU build, never built here)
//       loads OUT and generates 8 tokens greedily, twice, from a fresh
//       context each time.
// Prints one JSON object on standard output; exits 1 on any failure (a
// model llama.cpp cannot load included), 2 on usage errors.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import path from "node:path";

// the packages are installed in LINES_NODE_MODULES (a directory of the
// build tree), not next to this script (the source tree)
const modules = process.env.LINES_NODE_MODULES;
if (!modules) {
	console.error("llama-load: set LINES_NODE_MODULES to the node_modules directory");
	process.exit(2);
}
const require = createRequire(path.join(modules, "noop.js"));
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);

function same(a, b) {
	if (typeof a === "bigint" || typeof b === "bigint")
		return typeof a === typeof b && a === b;
	if (Array.isArray(a) || Array.isArray(b))
		return Array.isArray(a) && Array.isArray(b) && a.length === b.length &&
			a.every((x, i) => same(x, b[i]));
	if (typeof a === "number" && typeof b === "number")
		return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
	return a === b;
}

async function parse(out, base, linesMeta) {
	const { gguf } = await load("@huggingface/gguf");
	const o = await gguf(out, { allowLocalFile: true });
	const b = await gguf(base, { allowLocalFile: true });
	const want = JSON.parse(readFileSync(linesMeta, "utf8")).metadata;
	const problems = [];
	// version, tensor_count and kv_count are the header's, not keys
	const header = new Set(["version", "tensor_count", "kv_count"]);
	for (const [k, v] of Object.entries(b.metadata)) {
		if (header.has(k) || k === "general.file_type" || k.startsWith("split."))
			continue;
		if (!(k in o.metadata))
			problems.push(`${k}: missing`);
		else if (!same(v, o.metadata[k]))
			problems.push(`${k}: differs from the base's`);
	}
	let nlines = 0;
	for (const [k, v] of Object.entries(o.metadata)) {
		if (header.has(k) || k in b.metadata || k === "general.file_type")
			continue;
		if (!k.startsWith("lines."))
			problems.push(`${k}: neither the base's nor lines'`);
		else if (want[k] !== v)
			problems.push(`${k}: ${JSON.stringify(v)}, lines inspect shows ${JSON.stringify(want[k])}`);
		else
			nlines++;
	}
	if (Number(o.metadata.tensor_count) !== o.tensorInfos.length)
		problems.push("tensor_count differs from the tensor infos");
	const names = (x) => x.tensorInfos.map((t) => t.name).join(",");
	if (names(o) !== names(b))
		problems.push("the tensors are not the base's, in the base's order");
	return { ok: problems.length === 0, problems, lines_keys: nlines,
		tensors: o.tensorInfos.length,
		types: [...new Set(o.tensorInfos.map((t) => t.dtype))].sort((x, y) => x - y) };
}

async function generate(out) {
	const { getLlama } = await load("node-llama-cpp");
	const llama = await getLlama({ build: "never", gpu: false, logLevel: "error" });
	const model = await llama.loadModel({ modelPath: out });
	const prompt = model.tokenize("ab cd ef");
	const runs = [];
	for (let r = 0; r < 2; r++) {
		const ctx = await model.createContext({ contextSize: 64, threads: 1 });
		const seq = ctx.getSequence();
		const got = [];
		for await (const t of seq.evaluate(prompt, { temperature: 0 })) {
			got.push(Number(t));
			if (got.length >= 8)
				break;
		}
		runs.push(got);
		await ctx.dispose();
	}
	await model.dispose();
	await llama.dispose();
	const ok = runs[0].length > 0 && same(runs[0], runs[1]);
	return { ok, prompt: prompt.map(Number), tokens: runs[0], again: runs[1] };
}

const [mode, ...args] = process.argv.slice(2);
let r;
try {
	if (mode === "parse" && args.length === 3)
		r = await parse(...args);
	else if (mode === "generate" && args.length === 1)
		r = await generate(args[0]);
	else {
		console.error("usage: llama-load.mjs parse OUT BASE META.json | generate OUT");
		process.exit(2);
	}
} catch (e) {
	r = { ok: false, error: String(e && e.stack ? e.stack : e) };
}
console.log(JSON.stringify(r));
process.exit(r.ok ? 0 : 1);
