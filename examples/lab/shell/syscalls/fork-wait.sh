#!/bin/sh
# fork, exit status through wait.
set -eu
( exit 3 ) && exit 1 || rc=$?
test "$rc" -eq 3
