#!/bin/sh
# pexen: when="test $(uname -s) = FreeBSD"
# FreeBSD only (skipped elsewhere, with the condition as the reason).
set -eu
sysctl -n kern.ostype | grep -q FreeBSD
