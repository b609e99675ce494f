"""`pexen-harness boot-unit`: a systemd unit that runs `pexen-harness resume`
at boot, so a run goes on by itself after a reboot (planned or not)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import List, Optional

DEFAULT_UNIT_DIR = "/etc/systemd/system"

# Exit statuses of `resume` that are no failure of the unit: 1 (some tests
# failed), 2 (interrupted, or rebooting), 4 (nothing to resume). Restarting
# on them would loop; a crash (3, or a signal) is restarted.
_DONE_STATUSES = "1 2 4"


def unit_name(journal: str) -> str:
    """One unit per journal: pexen-resume-<12 hex digits of its path>.service."""
    digest = hashlib.sha256(os.path.abspath(journal).encode()).hexdigest()[:12]
    return f"pexen-resume-{digest}.service"


def _quote(arg: str) -> str:
    """An ExecStart argument as systemd reads it (double quotes, \\ and " escaped,
    % doubled: systemd expands %-specifiers)."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def unit_text(journal: str, python: Optional[str] = None,
              workdir: Optional[str] = None) -> str:
    """The unit for `journal` (an absolute path)."""
    journal = os.path.abspath(journal)
    python = python or sys.executable
    workdir = workdir or os.path.dirname(journal)
    command = " ".join(_quote(a) for a in (python, "-m", "pexen.harness.cli", "resume",
                                           "--journal", journal))
    env_lines = []
    for var in ("PEXEN_REBOOT_COMMAND", "PEXEN_BOOT_ID_FILE", "PATH"):
        value = os.environ.get(var)
        if value:
            env_lines.append(f"Environment={_quote(f'{var}={value}')}")
    env = "\n".join(env_lines)
    return f"""[Unit]
Description=pexen: resume the test run of {journal} after boot
Wants=network-online.target
After=network-online.target
# a controller that keeps crashing (a broken journal, say) is not restarted forever
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=simple
WorkingDirectory={workdir.replace("%", "%%")}
{env}
ExecStart={command}
SuccessExitStatus={_DONE_STATUSES}
RestartPreventExitStatus={_DONE_STATUSES}
Restart=on-failure
RestartSec=10
OOMScoreAdjust=-1000
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
"""


def _systemctl(*args: str) -> None:
    tool = shutil.which("systemctl")
    if tool is None:
        raise OSError("systemctl not found: is this a systemd machine?")
    done = subprocess.run([tool, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"systemctl {' '.join(args)} failed: "
                      f"{(done.stderr or done.stdout).strip() or done.returncode}")


def install(journal: str, unit_dir: str = DEFAULT_UNIT_DIR) -> str:
    """Write the unit and enable it; return its path."""
    path = os.path.join(unit_dir, unit_name(journal))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(unit_text(journal))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    _systemctl("daemon-reload")
    _systemctl("enable", unit_name(journal))
    return path


def remove(journal: str, unit_dir: str = DEFAULT_UNIT_DIR) -> Optional[str]:
    """Disable and delete the unit; return its path, or None if there was none."""
    path = os.path.join(unit_dir, unit_name(journal))
    if not os.path.exists(path):
        return None
    _systemctl("disable", unit_name(journal))
    os.unlink(path)
    _systemctl("daemon-reload")
    return path


__all__: List[str] = ["DEFAULT_UNIT_DIR", "install", "remove", "unit_name", "unit_text"]
