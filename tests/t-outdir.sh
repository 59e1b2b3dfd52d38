#!/bin/sh
# t-outdir.sh -- outputs as users deploy them (issue 14, items 11 and 12):
# a directory output into an existing empty directory, a symlink to one,
# or a mount point is built inside it and moved into place; a new output
# directory gets the mode the umask gives; lines writes its own README.md
# instead of carrying the base's model card; two runs writing the same OUT
# at once never leave OUT and its companions from different runs.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/f" --arch t5 --layers 3 --layers2 2 --dtype bf16 --hidden 16 --models 2 --seed 6 --shards 2 >/dev/null 2>&1
printf '# base-model\nThe card of the base model.\n' >"$tmp/f/base/README.md"
b=$tmp/f/base
m1=$tmp/f/ft1
m2=$tmp/f/ft2
cd "$tmp" || exit 99

# ---- an existing empty directory, kept as it is ----------------------------------
mkdir empty
ino=$(stat -c %i empty)
status 0 "-o into an existing empty directory" "$LINES" merge -q -b "$b" --lines --shard-size 20K -o empty "$m1" "$m2"
check "... writes the shards into it" sh -c "ls empty/model-00001-of-*.safetensors >/dev/null"
check "... the same directory (not replaced)" test "$(stat -c %i empty)" = "$ino"
check "... with no temporary directory left in it" sh -c "! ls -a empty | grep -q '^\.lines-'"
check "... and every shard verifies" sh -c "for s in empty/model-*.safetensors; do '$LINES' verify -q \"\$s\" || exit 1; done"

# ---- through a symlink ------------------------------------------------------------------
mkdir real
ln -s real link
status 0 "-o through a symlink to an empty directory" "$LINES" merge -q -b "$b" --lines -o link/ "$m1" "$m2"
check "... writes into its target" test -f real/model.safetensors -o -f real/model-00001-of-00001.safetensors
check "... and the symlink stays a symlink" test -L link

# ---- a mount point (root only) -------------------------------------------------------
mkdir mnt
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=64m lines-test "$tmp/mnt" 2>/dev/null; then
	status 0 "-o a tmpfs mount point" "$LINES" merge -q -b "$b" --lines -o mnt "$m1" "$m2"
	check "... writes into the mount" sh -c "ls mnt/*.safetensors >/dev/null && mountpoint -q mnt"
	check "... on its file system (no temporary directory beside it)" sh -c "! ls -a . | grep -q '^\.mnt\.lines-'"
	umount "$tmp/mnt"
else
	echo "ok $((n += 1)) # SKIP a tmpfs mount point: needs root and mount(8)"
	echo "ok $((n += 1)) # SKIP ... writes into the mount"
	echo "ok $((n += 1)) # SKIP ... on its file system"
fi

# ---- a directory whose parent the user cannot write (root runs it as nobody) -------
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
	mkdir -p ro/mnt && chown nobody ro/mnt && chmod 755 ro && chmod -R a+rX "$tmp/f" && chmod a+x "$tmp"
	status 0 "-o an empty directory in a parent the user cannot write" \
		setpriv --reuid=nobody --regid=nogroup --clear-groups "$LINES" merge -q -b "$b" --lines -o "$tmp/ro/mnt" "$m1" "$m2"
	check "... writes into it (the lock goes inside, then away)" sh -c "ls ro/mnt/*.safetensors >/dev/null && ! ls -a ro/mnt | grep -q lock"
else
	echo "ok $((n += 1)) # SKIP an unwritable parent: needs root and setpriv(1) to run as nobody"
	echo "ok $((n += 1)) # SKIP ... writes into it"
fi

# ---- the mode of a new directory ------------------------------------------------------
(umask 027 && "$LINES" merge -q -b "$b" --lines -o new027/ "$m1" "$m2")
check "a new output directory gets the mode the umask gives (027: 750)" test "$(stat -c %a new027)" = 750
(umask 022 && "$LINES" merge -q -b "$b" --lines -o new022/ "$m1" "$m2")
check "... (022: 755), not 700" test "$(stat -c %a new022)" = 755

# ---- README.md --------------------------------------------------------------------
check "the base's model card is not carried along" sh -c "! grep -q 'card of the base' new022/README.md"
check "lines writes its own README.md with the recipe" sh -c "grep -q 'made by lines' new022/README.md && grep -q 'method: sum' new022/README.md"
check "... the stacks and their depths" sh -c "grep -q 'encoder.block.: 3 blocks' new022/README.md && grep -q 'decoder.block.: 2 blocks' new022/README.md"
check "... the inputs" sh -c "grep -q '| base |' new022/README.md && test \$(grep -c '| model |' new022/README.md) -eq 2"
check "... and the command" sh -c "grep -q '^lines merge --config new022/lines_config.yml -o new022/' new022/README.md"
check "... a sharded input's bytes are all its shards'" sh -c \
	"grep -q \"^| base | \\\`$b\\\` | \$(cat '$b'/model-*.safetensors | wc -c) |\" new022/README.md"
status 0 "ties with its options into a directory" "$LINES" merge -q -b "$b" -m ties --trim tensor \
	--density 0.4 --lambda 0.7 --shard-size 20K -o rc/ "$m1" "$m2"
cmd=$(grep '^lines merge --config rc/lines_config.yml' rc/README.md)
check "... README.md's command names the configuration and the shard size" \
	test "$cmd" = "lines merge --config rc/lines_config.yml --shard-size 20480 -o rc/"
mv rc rc.first
# shellcheck disable=SC2086
"$LINES" $(echo "$cmd" | sed 's|^lines ||; s|--config rc/|--config rc.first/|') -q
check "... and makes the same directory again, README.md included" diff -r rc rc.first
jqok "... the manifests give a sharded input's bytes as all its shards'" \
	"[.run.inputs[0].bytes] == [$(cat "$b"/model-*.safetensors | wc -c)]" rc/model-00001-of-*.safetensors.manifest.json
status 0 "lines scale into a directory" "$LINES" scale -q -b "$b" --gamma 0.5 -o scaled/ "$m1"
check "... says an edited model, not a merged one" sh -c "grep -q '^# A LiNeS-edited model' scaled/README.md"
check "config.json is still carried along" test -f new022/config.json

# ---- --dtype: config.json names the output's dtype -----------------------------------
cp "$b/config.json" cfg.orig
jq '.torch_dtype = "bfloat16" | .text_config = {"dtype": "bfloat16", "x": 1}' cfg.orig >"$b/config.json"
status 0 "--dtype f32 into a directory" "$LINES" merge -q -b "$b" --dtype f32 -o d32/ "$m1" "$m2"
jqok "... config.json says float32, and text_config's dtype too" \
	'.torch_dtype == "float32" and .text_config == {"dtype": "float32", "x": 1}' d32/config.json
jqok "... the rest as it was" \
	"del(.torch_dtype, .text_config) == $(jq -c 'del(.torch_dtype, .text_config)' cfg.orig 2>/dev/null)" d32/config.json
printf 'merge_method: task_arithmetic\nbase_model: %s\nmodels:\n  - model: %s\n  - model: %s\nparameters: {weight: 1}\nout_dtype: float16\n' \
	"$b" "$m1" "$m2" >f16.yml
status 0 "out_dtype: float16 in a config" "$LINES" merge -q --config f16.yml -o d16/
jqok "... config.json says float16" '.torch_dtype == "float16"' d16/config.json
status 0 "no --dtype" "$LINES" merge -q -b "$b" -o dsame/ "$m1" "$m2"
check "... config.json is the base's, byte for byte" cmp "$b/config.json" dsame/config.json
printf '{"torch_dtype": "bfloat16",' >"$b/config.json"
status 0 "--dtype f32 with a config.json that is not JSON: the run succeeds" \
	"$LINES" merge -q -b "$b" --dtype f32 -o dbad/ "$m1" "$m2"
check "... and config.json is copied as it is" cmp "$b/config.json" dbad/config.json
cp cfg.orig "$b/config.json"

# ---- two runs on the same OUT --------------------------------------------------------
family "$tmp/g" --arch llama --layers 3 --dtype bf16 --hidden 64 --models 2 --seed 7 >/dev/null 2>&1
gb=$tmp/g/base.safetensors
LINES_TEST_JOB_DELAY_US=20000 "$LINES" merge -q -b "$gb" --lines -w 1,2 --chunk 16K -o same.st "$tmp/g/ft1.safetensors" "$tmp/g/ft2.safetensors" &
first=$!
sleep 0.3
status 0 "a second run on the same OUT" "$LINES" merge -v -b "$gb" --lines -w 2,1 -o same.st "$tmp/g/ft1.safetensors" "$tmp/g/ft2.safetensors"
wait $first
ok $? "... and the first run both succeed"
check "... the second waited for the first" has "$tmp/err" "waiting for it"
check "... OUT, OUT.xxh128 and OUT.manifest.json are of one run" "$LINES" verify -q same.st
check "... of the second run (the last to commit)" sh -c "grep -q '\"weights\": \[' same.st.manifest.json && tr -d ' \n' <same.st.manifest.json | grep -q '\"weights\":\[2\.0,1\.0\]'"
check "... and no lock or temporary file is left" sh -c "! ls -a . | grep -q 'same.st.lines-'"
done_testing
