#!/bin/sh
# Needs an NVIDIA GPU; without one it skips (exit status 77).

dev=/dev/nvidia0
if [ ! -e "$dev" ]; then
    echo "needs-gpu: no $dev, skipping"
    exit 77
fi
if [ ! -r "$dev" ] || [ ! -w "$dev" ]; then
    echo "needs-gpu: $dev exists but is not readable and writable" >&2
    exit 1
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L || exit 1
fi
echo "needs-gpu: $dev is usable"
