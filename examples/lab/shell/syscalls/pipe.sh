#!/bin/sh
# A pipe carries bytes unchanged.
set -eu
test "$(printf 'abc\n' | cat)" = abc
