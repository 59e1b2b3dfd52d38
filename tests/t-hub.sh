#!/bin/sh
# t-hub.sh -- models named as on the Hugging Face hub (org/name[@rev]),
# found in the local cache that huggingface_hub fills (issue 16, item 4):
# the snapshot a branch names, a commit given directly, the cache from
# HF_HUB_CACHE, HF_HOME or ~/.cache; a clear error naming the places
# looked at when the model or revision is not there; a path wins over a
# hub id; model+lora refused. No network, ever.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/fam" --arch llama --dtype bf16 --layers 2 --hidden 16 --models 2 --seed 4 --shards 2 >/dev/null 2>&1

# cache DIR: the family as huggingface_hub stores it: blobs by hash,
# snapshots/COMMIT/ of symbolic links to them, refs/main naming COMMIT
cache() {
	for m in base ft1 ft2; do
		r=$1/models--acme--$m
		mkdir -p "$r/refs" "$r/snapshots/c0ffee$m" "$r/blobs"
		printf 'c0ffee%s' "$m" >"$r/refs/main"
		for f in "$tmp/fam/$m"/*; do
			h=$(cksum <"$f" | cut -d' ' -f1)
			cp "$f" "$r/blobs/$h"
			ln -s "../../blobs/$h" "$r/snapshots/c0ffee$m/${f##*/}"
		done
	done
}
cache "$tmp/hub"
"$LINES" merge -q -b "$tmp/fam/base" -o "$tmp/ref.st" "$tmp/fam/ft1" "$tmp/fam/ft2" ||
	{ echo "Bail out! the reference merge failed"; exit 99; }

status 0 "org/name from HF_HUB_CACHE" env HF_HUB_CACHE="$tmp/hub" \
	"$LINES" merge -q -b acme/base -o "$tmp/o1.st" acme/ft1 acme/ft2
check "... gives the bytes of the same merge from the directories" cmp -s "$tmp/ref.st" "$tmp/o1.st"
status 0 "org/name@main (a branch) and @COMMIT" env HF_HUB_CACHE="$tmp/hub" \
	"$LINES" merge -q -b acme/base@main -o "$tmp/o2.st" acme/ft1@c0ffeeft1 acme/ft2
check "... the same bytes" cmp -s "$tmp/ref.st" "$tmp/o2.st"
status 0 "-n --json with hub ids" env HF_HUB_CACHE="$tmp/hub" \
	"$LINES" merge -n --json -b acme/base -o "$tmp/o3.st" acme/ft1 acme/ft2
jqok "... records the ids as given" '.base == "acme/base" and .models == ["acme/ft1", "acme/ft2"]'

mkdir -p "$tmp/home/hub" "$tmp/xdg/huggingface" "$tmp/user/.cache/huggingface"
cache "$tmp/home/hub"
status 0 "the cache from HF_HOME/hub" env -u HF_HUB_CACHE HF_HOME="$tmp/home" \
	"$LINES" merge -q -b acme/base -o "$tmp/o4.st" acme/ft1 acme/ft2
cache "$tmp/user/.cache/huggingface/hub"
status 0 "the cache from ~/.cache/huggingface/hub" env -u HF_HUB_CACHE -u HF_HOME -u XDG_CACHE_HOME \
	HOME="$tmp/user" "$LINES" merge -q -b acme/base -o "$tmp/o5.st" acme/ft1 acme/ft2
check "... the same bytes" cmp -s "$tmp/ref.st" "$tmp/o5.st"

status 1 "a model not in the cache is an error" env HF_HUB_CACHE="$tmp/hub" \
	"$LINES" merge -q -b acme/base -o "$tmp/bad.st" acme/ft1 acme/nope
check "... naming the place looked at" has "$tmp/err" "$tmp/hub/models--acme--nope"
check "... and nothing is written" test ! -e "$tmp/bad.st"
status 1 "a revision not in the cache is an error" env HF_HUB_CACHE="$tmp/hub" \
	"$LINES" merge -q -b acme/base -o "$tmp/bad.st" acme/ft1 acme/ft2@v9
check "... naming both places looked at" sh -c \
	"grep -qF 'models--acme--ft2/refs/v9' '$tmp/err' && grep -qF 'models--acme--ft2/snapshots/v9' '$tmp/err'"
status 1 "model+lora is refused" env HF_HUB_CACHE="$tmp/hub" \
	"$LINES" merge -q -b acme/base -o "$tmp/bad.st" acme/ft1 acme/ft2+acme/lora
check "... saying LoRA is not supported" has "$tmp/err" "LoRA"
check "... and nothing is written" test ! -e "$tmp/bad.st"

# a path that exists wins over a hub id of the same name
mkdir -p "$tmp/cwd/acme" && cp -r "$tmp/fam/ft1" "$tmp/cwd/acme/ft2"
status 0 "an existing path named like org/name is read as a path" sh -c \
	"cd '$tmp/cwd' && HF_HUB_CACHE='$tmp/hub' '$LINES' merge -q -b '$tmp/fam/base' -o '$tmp/o6.st' '$tmp/fam/ft1' acme/ft2"
"$LINES" merge -q -b "$tmp/fam/base" -o "$tmp/o7.st" "$tmp/fam/ft1" "$tmp/fam/ft1" 2>/dev/null
check "... (the merge of ft1 twice, not of ft1 and ft2)" cmp -s "$tmp/o6.st" "$tmp/o7.st"
status 0 "lines inspect takes a hub id" env HF_HUB_CACHE="$tmp/hub" "$LINES" inspect acme/base@main

done_testing
