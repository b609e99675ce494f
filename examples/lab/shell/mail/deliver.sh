#!/bin/sh
# pexen: requires=mta uses=spool
# Deliver a message through whichever agent provided 'mta', and read it back.
set -eu
spool="$PEXEN_RUN_DATA/scratch/spool"
agent=$(cat "$spool/agent")
msg="$spool/msg.$$"
printf 'Subject: test\n\nhello from %s\n' "$PEXEN_TASK" > "$msg"
grep -q "hello from $PEXEN_TASK" "$msg"
rm -f "$msg"
echo "delivered through $agent"
