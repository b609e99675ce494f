#!/bin/sh
# pexen: provides=mta requires=scratch claims=spool priority=5
# The other mail transport agent: it delivers through a named pipe.
set -eu
spool="$PEXEN_RUN_DATA/scratch/spool"
mkdir -p "$spool"
echo pipe-agent > "$spool/agent"
