#!/bin/sh
# pexen: when="test $(uname -s) = Linux"
# Linux only: the kernel's view of this process agrees with the shell's.
set -eu
grep -q "^Pid:[[:space:]]*$$\$" /proc/$$/status
test -r /proc/sys/kernel/osrelease
echo "kernel $(cat /proc/sys/kernel/osrelease)"
