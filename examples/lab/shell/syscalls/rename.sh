#!/bin/sh
# rename() replaces the target in one step.
set -eu
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
echo old > "$d/target"
echo new > "$d/tmp"
mv -f "$d/tmp" "$d/target"
test "$(cat "$d/target")" = new && test ! -e "$d/tmp"
