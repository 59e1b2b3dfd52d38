#!/bin/sh
# t-deps.sh -- no two files of the library need each other.
#
# STYLE.md: dependencies point down; if two files need each other, a third
# (the interface they share) is missing. This test builds two graphs and
# reports every cycle in them (every strongly connected component of more
# than one node, found with Tarjan's algorithm) as a `not ok` line naming
# its files, followed by the edges inside it; a graph without cycles is
# one `ok` line.
#
#   symbols   A.c -> B.c when A's object uses a symbol that B's defines
#             (nm -u and nm --defined-only -g on the built objects of
#             liblines, src/*/*liblines_a-*.o and src/*/*libkern_*_a-*.o). Each
#             edge names its symbols and the header that declares each
#             (ctags: the prototypes and extern variables of src/*/*.h and
#             include/*.h), so a cycle shows which interface carries it.
#   headers   X.h -> Y.h when X.h includes Y.h.
#
# Edges from the includes of the .c files alone (A.c sees a header that
# declares something of B.c) are not a graph of their own: every file sees
# lines.h through internal.h, and plan.h declares the functions of seven
# files, so that graph is one component of every file and says nothing
# the symbols do not say better.
#
# DEPS_VERBOSE=1 lists every edge of the symbol graph as well. The objects
# are looked for under $LINES_BUILDDIR (the top build directory, which
# `make deps` and `make check` set; the current directory otherwise), the
# headers under $TESTS_SRCDIR/.. (the source tree, which is not the build
# tree under distcheck). Only sh, awk, nm and ctags.
set -u
: "${LINES_BUILDDIR:=.}"
: "${TESTS_SRCDIR:=$(dirname "$0")}"
: "${NM:=nm}"
: "${AWK:=awk}"
: "${CTAGS:=ctags}"
top=$TESTS_SRCDIR/..

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lines-deps-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

if ! command -v "$NM" >/dev/null 2>&1; then
	echo "Bail out! $NM not found (binutils)"
	exit 99
fi
# universal-ctags names the header of each symbol; without it the edges
# are the same, with "in no header" beside their symbols
if "$CTAGS" --version 2>/dev/null | grep -q 'Universal Ctags'; then
	have_ctags=1
else
	have_ctags=0
	echo "# $CTAGS is not universal-ctags: the headers of the symbols are not named"
fi

# the objects of liblines, each named by its source file
for o in "$LINES_BUILDDIR"/src/*/*liblines_a-*.o "$LINES_BUILDDIR"/src/*/*libkern_*_a-*.o; do
	[ -f "$o" ] || continue
	b=${o##*/}
	d=${o%/*}
	d=src/${d##*/}
	f=$d/${b#*lib*_a-}
	f=${f%.o}.c
	"$NM" --defined-only -g "$o" | $AWK -v f="$f" 'NF >= 3 { print "D", f, $3 }'
	"$NM" -u "$o" | $AWK -v f="$f" 'NF >= 2 { print "U", f, $NF }'
	echo "C $f"
done >"$tmp/facts" || exit 99
if ! grep -q '^C ' "$tmp/facts"; then
	echo "Bail out! no objects of liblines under $LINES_BUILDDIR/src: build it first"
	exit 99
fi

# what each header declares, and what it includes
for h in "$top"/src/*/*.h "$top"/include/*.h; do
	[ -f "$h" ] && [ $have_ctags = 1 ] || continue
	rel=${h#"$top"/}
	"$CTAGS" -x --language-force=C --kinds-C=px --_xformat='%N' "$h" |
		$AWK -v h="$rel" 'NF { print "H", h, $1 }'
done >>"$tmp/facts" || exit 99
for f in "$top"/src/*/*.h "$top"/include/*.h; do
	[ -f "$f" ] || continue
	rel=${f#"$top"/}
	sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
		while read -r inc; do
			hit=$(cd "$top" && ls src/*/"$inc" 2>/dev/null | head -n 1)
			if [ -n "$hit" ]; then
				echo "I $rel $hit"
			elif [ -f "$top/include/$inc" ]; then
				echo "I $rel include/$inc"
			fi
		done
done >>"$tmp/facts" || exit 99

$AWK -v verbose="${DEPS_VERBOSE:-0}" '
function sort_words(s,    a, n, i, j, t, out)
{
	n = split(s, a, " ")
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	out = ""
	for (i = 1; i <= n; i++)
		if (i == 1 || a[i] != a[i - 1])
			out = out (out == "" ? "" : " ") a[i]
	return out
}

function add_edge(g, a, b, why)
{
	if (a == b)
		return
	if (!((g, a, b) in label)) {
		label[g, a, b] = why
		adj[g, a] = adj[g, a] " " b
		nedges[g]++
	} else {
		label[g, a, b] = label[g, a, b] " " why
	}
}

# Tarjan: every strongly connected component of more than one node
function strong(g, v,    i, n, w, ws, members, k)
{
	idx[v] = low[v] = ++counter
	stack[++sp] = v
	onstack[v] = 1
	n = split(sort_words(adj[g, v]), ws, " ")
	for (i = 1; i <= n; i++) {
		w = ws[i]
		if (!(w in idx)) {
			strong(g, w)
			if (low[w] < low[v])
				low[v] = low[w]
		} else if (onstack[w] && idx[w] < low[v]) {
			low[v] = idx[w]
		}
	}
	if (low[v] == idx[v]) {
		members = ""
		k = 0
		do {
			w = stack[sp--]
			onstack[w] = 0
			members = members " " w
			k++
		} while (w != v)
		if (k > 1)
			cycles[g, ++ncycles[g]] = sort_words(members)
	}
}

# one TAP line per cycle of graph g over the nodes, and the edges in it
function check(g, nodes, what,    c, i, j, k, n, m, f, inside, ns, cs, ws)
{
	for (f in idx)
		delete idx[f]
	for (f in low)
		delete low[f]
	for (f in onstack)
		delete onstack[f]
	counter = sp = 0
	ncycles[g] = 0
	n = split(sort_words(nodes), ns, " ")
	for (i = 1; i <= n; i++)
		if (!(ns[i] in idx))
			strong(g, ns[i])
	printf "# %s: %d files, %d edges (%s)\n", g, n, nedges[g] + 0, what
	if (ncycles[g] == 0) {
		printf "ok %d - %s: no cycle among the %d files\n", ++t, g, n
		return
	}
	for (c = 1; c <= ncycles[g]; c++) {
		m = split(cycles[g, c], cs, " ")
		printf "not ok %d - %s: a cycle of %d files: %s\n", ++t, g, m, cycles[g, c]
		failed++
		for (j in inside)
			delete inside[j]
		for (j = 1; j <= m; j++)
			inside[cs[j]] = 1
		for (i = 1; i <= m; i++) {
			k = split(sort_words(adj[g, cs[i]]), ws, " ")
			for (j = 1; j <= k; j++)
				if (ws[j] in inside)
					printf "#   %s -> %s: %s\n", cs[i], ws[j], label[g, cs[i], ws[j]]
		}
	}
}

$1 == "C" { objs = objs " " $2 }
$1 == "D" { def[$3] = $2 }
$1 == "U" { used[++nu] = $2 SUBSEP $3 }
$1 == "H" { if (!($3 in declared)) declared[$3] = $2 }
$1 == "I" && $2 ~ /\.h$/ { headers = headers " " $2 " " $3; add_edge("headers", $2, $3, "") }

END {
	# symbols: each edge says what it uses, and which header declares it
	for (i = 1; i <= nu; i++) {
		split(used[i], p, SUBSEP)
		if (!(p[2] in def) || def[p[2]] == p[1])
			continue
		sym[p[1], def[p[2]]] = sym[p[1], def[p[2]]] " " p[2]
		add_edge("symbols", p[1], def[p[2]], "")
	}
	for (k in sym) {
		n = split(sort_words(sym[k]), ss, " ")
		s = ""
		for (i = 1; i <= n; i++)
			s = s (i > 1 ? ", " : "") ss[i] " (" \
			    (ss[i] in declared ? declared[ss[i]] : "in no header") ")"
		split(k, p, SUBSEP)
		label["symbols", p[1], p[2]] = s
	}
	for (k in label) {
		split(k, p, SUBSEP)
		if (p[1] == "headers")
			label[k] = "#include \"" substr(p[3], index(p[3], "/") + 1) "\""
	}
	if (verbose + 0) {
		n = split(sort_words(objs), ns, " ")
		for (i = 1; i <= n; i++) {
			m = split(sort_words(adj["symbols", ns[i]]), ws, " ")
			for (j = 1; j <= m; j++)
				printf "# edge %s -> %s: %s\n", ns[i], ws[j], label["symbols", ns[i], ws[j]]
		}
	}
	check("symbols", objs, "A -> B: A uses a symbol B defines")
	check("headers", headers, "A -> B: header A includes header B")
	printf "1..%d\n", t
	exit failed ? 1 : 0
}
' "$tmp/facts"
