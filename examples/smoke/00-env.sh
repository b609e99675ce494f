#!/bin/sh
# What every task gets from pexen-harness: its identity and a data directory
# in the environment, its own directory as cwd, and an empty stdin.
set -u

fail() {
    echo "00-env: $*" >&2
    exit 1
}

for var in PEXEN_JOURNAL PEXEN_RUN_ID PEXEN_TASK PEXEN_ATTEMPT PEXEN_REBOOT_COUNT \
           PEXEN_TASK_TOKEN PEXEN_TASK_DATA; do
    eval "value=\${$var-}"
    [ -n "$value" ] || fail "$var is not set (not run by pexen-harness?)"
done

# The task key is the path in the suite without the extension.
[ "$PEXEN_TASK" = "00-env" ] || fail "PEXEN_TASK is '$PEXEN_TASK', expected '00-env'"

here=$(cd "$(dirname "$0")" && pwd -P)
[ "$(pwd -P)" = "$here" ] || fail "cwd is $(pwd -P), expected $here"

if read -r line; then
    fail "stdin is not empty (read '$line')"
fi

# The data directory is kept across attempts and reboots: each attempt
# appends a line, so a resumed run shows the earlier ones too. An executable
# makes it when it wants one (pexen makes none for tasks that do not).
mkdir -p "$PEXEN_TASK_DATA" || fail "cannot make PEXEN_TASK_DATA ($PEXEN_TASK_DATA)"
echo "run $PEXEN_RUN_ID attempt $PEXEN_ATTEMPT reboots $PEXEN_REBOOT_COUNT" \
    >>"$PEXEN_TASK_DATA/attempts.log" || fail "cannot write to $PEXEN_TASK_DATA"

echo "00-env: task $PEXEN_TASK, attempt $PEXEN_ATTEMPT; $(wc -l <"$PEXEN_TASK_DATA/attempts.log") attempt(s) logged in $PEXEN_TASK_DATA"
