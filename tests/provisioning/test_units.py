"""The systemd units: they verify cleanly and the sync daemon's and the HR connector's
sandboxes rate <= 2.0.

`systemd-analyze verify` runs against a throw-away root holding the units, the stock
system units and the programs at their installed paths, so the check does not depend on
this machine having the package installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
UNIT_NAMES = [
    "interview-kiosk.service",
    "interview-sync.service",
    "interview-retention.service",
    "interview-retention.timer",
    "interview-hr.service",  # for the customer's IT server, not the terminal image
]
ANALYZE = shutil.which("systemd-analyze")


def _directives(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert ANALYZE, "systemd-analyze is missing: `make deps` installs Debian's systemd package"
    root = tmp_path_factory.mktemp("root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    program = REPO / ".venv/bin/kiosk-provision"
    for name in ("interview-kiosk", "interview-sync", "kiosk-provision", "cage", "env"):
        shutil.copy2(program if program.exists() else shutil.which("env"), root / "usr/bin" / name)
    # The HR connector lives in its own venv on IT's server (docs/connector.md).
    (root / "opt/interview-hr/bin").mkdir(parents=True)
    hr = REPO / ".venv/bin/interview-hr"
    shutil.copy2(hr if hr.exists() else shutil.which("env"), root / "opt/interview-hr/bin/interview-hr")
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for name in UNIT_NAMES:
        shutil.copy2(UNITS / name, etc / name)
    return root


def _verify(root: Path, unit: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ANALYZE, "verify", f"--root={root}", "--man=no", unit],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("unit", UNIT_NAMES)
def test_unit_verifies_without_a_single_warning(unit_root: Path, unit: str) -> None:
    proc = _verify(unit_root, unit)
    # verify exits 0 on unknown keys and unparsable values; only its output tells.
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


def test_verify_would_catch_a_typo(unit_root: Path) -> None:
    broken = (UNITS / "interview-sync.service").read_text().replace("ProtectHome=", "ProtectHme=")
    (unit_root / "etc/systemd/system/broken-sync.service").write_text(broken)
    proc = _verify(unit_root, "broken-sync.service")
    assert "Unknown key" in proc.stderr


def test_cage_drop_in_verifies(unit_root: Path) -> None:
    dropin = unit_root / "etc/systemd/system/interview-kiosk.service.d"
    dropin.mkdir(exist_ok=True)
    shutil.copy2(UNITS / "interview-kiosk.service.d/cage.conf.example", dropin / "cage.conf")
    try:
        proc = _verify(unit_root, "interview-kiosk.service")
        assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    finally:
        shutil.rmtree(dropin)


def _exposure(unit: str, threshold: int = 100) -> tuple[int, float]:
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=yes", f"--threshold={threshold}", "--no-pager",
         str(UNITS / unit)],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return proc.returncode, float(match.group(1))


def test_sync_daemon_sandbox_rates_two_or_better() -> None:
    # --threshold is in tenths: systemd-analyze exits non-zero above 2.0.
    rc, level = _exposure("interview-sync.service", threshold=20)
    assert level <= 2.0
    assert rc == 0


def test_retention_job_is_sandboxed_at_least_as_tightly() -> None:
    _, level = _exposure("interview-retention.service")
    _, sync_level = _exposure("interview-sync.service")
    assert level <= sync_level


def test_kiosk_runs_unprivileged_with_a_watchdog_and_no_network() -> None:
    d = _directives(UNITS / "interview-kiosk.service")
    assert d["User"] == ["kiosk"]
    assert d["Type"] == ["notify"]
    assert d["Restart"] == ["always"]
    assert int(d["WatchdogSec"][0]) > 0
    assert d["IPAddressDeny"] == ["any"]
    assert "AF_INET" not in " ".join(d["RestrictAddressFamilies"])


def test_sync_daemon_writes_only_the_data_directory() -> None:
    d = _directives(UNITS / "interview-sync.service")
    assert d["ProtectSystem"] == ["strict"]
    assert d["ReadWritePaths"] == ["/var/lib/interview-kiosk"]
    assert d["CapabilityBoundingSet"] == [""]
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["Type"] == ["notify"] and int(d["WatchdogSec"][0]) > 0
    assert "@system-service" in d["SystemCallFilter"]


def test_timer_starts_the_retention_service() -> None:
    d = _directives(UNITS / "interview-retention.timer")
    assert "Unit" not in d  # same name as the service, so it starts interview-retention.service
    assert d["OnCalendar"] and d["Persistent"][0] in ("yes", "true")


def test_hr_connector_sandbox_rates_two_or_better() -> None:
    rc, level = _exposure("interview-hr.service", threshold=20)
    assert level <= 2.0
    assert rc == 0


def test_hr_connector_is_a_notify_service_that_does_not_loop_on_a_bad_config() -> None:
    d = _directives(UNITS / "interview-hr.service")
    assert d["Type"] == ["notify"] and int(d["WatchdogSec"][0]) > 0
    assert d["Restart"] == ["always"]
    assert d["RestartPreventExitStatus"] == ["2"]  # interview-hr's exit code for an unusable config
    assert d["User"] == ["interview-hr"]
    assert d["ConditionPathExists"] == ["/etc/interview-hr/config.toml"]
    assert d["ExecStart"][0].split()[-1] == "serve"
    assert d["ProtectSystem"] == ["strict"]
    # Writable: the data directory the example config names, and nothing else.
    import tomllib

    example = tomllib.loads((REPO / "sync/connector/example-config.toml").read_text())
    assert [f"/var/lib/{x}" for x in d["StateDirectory"]] == [example["connector"]["data_dir"]]
    assert "ReadWritePaths" not in d
    # No capability, so the example's ports must not need one.
    assert d["CapabilityBoundingSet"] == [""] and d["NoNewPrivileges"] == ["yes"]
    from sync.connector.settings import RelaySection

    assert example["https"]["port"] > 1024
    assert RelaySection.model_fields["port"].default > 1024


def test_terminal_image_does_not_package_the_hr_connector_unit() -> None:
    # build_image.sh installs named units; the connector's belongs on IT's server.
    script = (REPO / "build_image.sh").read_text()
    assert "interview-sync.service" in script
    assert "interview-hr.service" not in script and "systemd/*" not in script
