#!/bin/sh
# stat() reports the size written.
set -eu
f=$(mktemp)
trap 'rm -f "$f"' EXIT
printf '12345' > "$f"
test "$(wc -c < "$f" | tr -d ' ')" -eq 5
