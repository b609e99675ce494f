#!/bin/sh
# pexen: provides=mta requires=scratch claims=spool
# A mail transport agent: a spool directory. One of two providers of 'mta'.
set -eu
spool="$PEXEN_RUN_DATA/scratch/spool"
mkdir -p "$spool"
echo local-spool > "$spool/agent"
