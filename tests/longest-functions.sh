#!/bin/sh
# longest-functions.sh -- the N longest functions of src/ (default 20), one
# a line: lines, file:line, name. Lines count from the line that names the
# function to its closing brace, as universal-ctags sees them (its end
# field); static inline functions of headers count too.
#
#   tests/longest-functions.sh [N] [DIR]      (DIR: the source tree, default .)
#
# `make longest` runs it on the source tree.
set -eu
n=${1:-20}
top=${2:-.}
: "${CTAGS:=ctags}"
: "${AWK:=awk}"

if ! "$CTAGS" --version 2>/dev/null | grep -q 'Universal Ctags'; then
	echo "longest-functions.sh: needs universal-ctags (Debian: universal-ctags)" >&2
	exit 2
fi
case $n in
'' | *[!0-9]*)
	echo "usage: longest-functions.sh [N] [DIR]" >&2
	exit 2
	;;
esac

cd "$top"
"$CTAGS" -R --languages=C --langmap=C:.c.h --fields=+ne --kinds-C=f -x \
	--_xformat='%{end} %{line} %N %F' src |
	$AWK '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ { printf "%6d  %s:%d  %s\n", $1 - $2 + 1, $4, $2, $3 }' |
	sort -k1,1nr -k2,2 | head -n "$n"
