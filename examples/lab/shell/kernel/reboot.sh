#!/bin/sh
# pexen: when="test $PEXEN_ALLOW_REBOOT = 1" rerun_on_interrupt=false timeout=900
# Reboots the machine once and checks that it came back with another boot id.
# Runs only in a run started with --allow-reboot; skipped otherwise.
set -eu
mkdir -p "$PEXEN_TASK_DATA"
saved="$PEXEN_TASK_DATA/boot_id"
now=$(cat "${PEXEN_BOOT_ID_FILE:-/proc/sys/kernel/random/boot_id}")
if [ "$PEXEN_REBOOT_COUNT" -eq 0 ]; then
    echo "$now" > "$saved"
    pexen-harness report before-reboot pass
    exec pexen-harness reboot
fi
test "$now" != "$(cat "$saved")" || { echo "same boot id after the reboot"; exit 1; }
echo "rebooted: $(cat "$saved") -> $now"
