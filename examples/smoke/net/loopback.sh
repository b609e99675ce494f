#!/bin/sh
# The loopback interface exists and is up. No network traffic: it only reads
# /proc and /sys.

if ! grep -q '^ *lo:' /proc/net/dev; then
    echo "loopback: no 'lo' in /proc/net/dev" >&2
    exit 1
fi

flags_file=/sys/class/net/lo/flags
if [ -r "$flags_file" ]; then
    flags=$(cat "$flags_file")
    if [ $((flags & 1)) -eq 0 ]; then   # IFF_UP
        echo "loopback: lo is down (flags $flags)" >&2
        exit 1
    fi
    echo "loopback: lo is up (flags $flags)"
else
    echo "loopback: lo is present ($flags_file not readable, state not checked)"
fi
