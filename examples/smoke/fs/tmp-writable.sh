#!/bin/sh
# The temporary directory is writable: a file written there reads back the same.
set -eu

dir=${TMPDIR:-/tmp}
file=$(mktemp "$dir/pexen-smoke.XXXXXX")
trap 'rm -f "$file"' EXIT

expected="pexen smoke test, pid $$"
echo "$expected" >"$file"
got=$(cat "$file")
if [ "$got" != "$expected" ]; then
    echo "tmp-writable: wrote '$expected' to $file, read back '$got'" >&2
    exit 1
fi
echo "tmp-writable: $dir is writable"
