#!/bin/sh
# symlink() and readlink() round trip.
set -eu
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
ln -s target "$d/link"
test "$(readlink "$d/link")" = target
