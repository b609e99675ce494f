#!/bin/sh
# pexen: provides=scratch priority=-10
# Make the run's scratch directory, which later tests write into.
set -eu
dir="$PEXEN_RUN_DATA/scratch"
mkdir -p "$dir"
echo "scratch directory: $(cd "$dir" && pwd)"
