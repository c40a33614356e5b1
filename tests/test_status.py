"""`nixify status` without hosts: the typed probe read forward-compatibly, the table,
"reboot pending", skipped records named, the explicit status run (no atexit), a
closed pipe and an inventory that cannot load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from labkit import REPO, VENV_BIN

from nixify.pipeline.pins import KnownGoodRecord
from nixify.release.status import (
    STATUS_SCHEMA,
    FleetStatus,
    HostProbe,
    StatusProbe,
    fleet_document,
    fleet_status,
    read_probes,
    render,
)


def store(name: str, h: str) -> str:
    return f"/nix/store/{h * 32}-nixos-system-{name}"


def rec(host: str, closure: str, name: str = "20261130T040000Z-aaaaaaaa") -> KnownGoodRecord:
    return KnownGoodRecord(name=name, host=host, closure=closure, commit="c" * 40, dirty=False,
                           utc="2026-11-30T04:00:00+00:00", kind="deploy")


def probe(host: str, running: str, recs: list[KnownGoodRecord], booted: str | None = None,
          profile: str | None = None, skipped: list[str] | None = None) -> HostProbe:
    return HostProbe(host=host, role="nas", reachable=True,
                     system={"running": running, "booted": booted or running,
                             "profile": profile or running},
                     records=recs, skipped=skipped or [],
                     roots={r.name: r.closure for r in recs})


def test_a_switch_since_boot_is_a_pending_reboot_not_drift() -> None:
    new, old = store("nas-1", "b"), store("nas-1", "a")
    st = fleet_status([probe("nas-1", new, [rec("nas-1", new)], booted=old)])[0]
    assert st.drift() == [] and st.reboot_pending and st.state() == "ok"
    doc = st.to_json()
    assert doc["reboot_pending"] is True and doc["booted_is_running"] is False
    row = render([st]).splitlines()[1]
    assert row.startswith("nas-1") and row.endswith("reboot pending")
    assert "DRIFT" not in row


def test_a_boot_mode_deploy_waits_for_its_reboot() -> None:
    new, old = store("nas-1", "b"), store("nas-1", "a")
    st = fleet_status([probe("nas-1", old, [rec("nas-1", new)], profile=new)])[0]
    assert st.drift() == [] and st.reboot_pending and st.runs_known_good
    # an out-of-band profile that is not known-good is drift
    other = store("nas-1", "c")
    st = fleet_status([probe("nas-1", old, [rec("nas-1", new)], profile=other)])[0]
    assert st.drift() == ["running != known-good", "profile != running"]


def test_the_table_has_headers_and_one_line_per_host() -> None:
    a, b = store("nas-1", "b"), store("nas-2", "c")
    probes = [probe("nas-1", a, [rec("nas-1", a)]),
              probe("nas-2", b, [rec("nas-2", b)]),
              HostProbe(host="nas-3", role="nas", reachable=False, error="did not answer")]
    lines = render(fleet_status(probes)).splitlines()
    assert lines[0].split() == ["HOST", "ROLE", "STATE", "RUNNING", "KNOWN-GOOD", "TAG", "PINS",
                                "NOTES"]
    assert [line.split()[0] for line in lines[1:4]] == ["nas-1", "nas-2", "nas-3"]
    assert lines[4] == "2/3 hosts answered; 0 with drift; 0 reboot pending"
    assert len(lines) == 5
    # the columns line up: every host's STATE starts under the header's
    col = lines[0].index("STATE")
    assert all(line[col:].split()[0] in ("ok", "UNREACHABLE") for line in lines[1:4])


def test_skipped_records_are_shown_and_named_with_their_host() -> None:
    a = store("nas-1", "b")
    why = "/var/lib/nixify/known-good/bad.json: not JSON (Expecting value)"
    st = fleet_status([probe("nas-1", a, [rec("nas-1", a)], skipped=[why])])[0]
    assert st.state() == "ok" and st.to_json()["skipped"] == [why]
    text = render([st])
    assert "1 record skipped" in text.splitlines()[1]
    assert f"nas-1: skipped record {why}" in text


def test_the_probe_is_read_forward_compatibly(tmp_path: Path) -> None:
    a = store("nas-1", "b")
    good = json.loads(rec("nas-1", a).to_json())
    newer = dict(good, name="20261201T000000Z-bbbbbbbb", colour="blue")  # a newer nixify's field
    broken = {"name": "20261202T000000Z-cccccccc", "host": "nas-1"}  # no closure
    doc = {
        "schema": STATUS_SCHEMA + 1, "written_by": "nixify 9",
        "hosts": [{"host": "nas-1", "role": "nas", "reachable": True, "uptime": 5,
                   "system": {"running": a}, "records": [good, newer, broken],
                   "skipped": ["/var/lib/nixify/known-good/x.json: not JSON"],
                   "roots": {}}],
    }
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(doc))
    (host,) = read_probes(path)
    assert [r.name for r in host.records] == [good["name"], newer["name"]]
    assert host.skipped[0] == "/var/lib/nixify/known-good/x.json: not JSON"
    assert "record 20261202T000000Z-cccccccc" in host.skipped[1]
    assert "closure" in host.skipped[1]
    # written back at this schema, and read again unchanged
    again = StatusProbe(hosts=[host])
    assert json.loads(again.to_text())["schema"] == STATUS_SCHEMA
    path.write_text(again.to_text())
    assert read_probes(path) == [host]


def test_a_probe_file_that_is_not_one_is_named(tmp_path: Path) -> None:
    from nixify.errors import ConfigError

    path = tmp_path / "probe.json"
    path.write_text('{"hosts": [{"role": "nas"}]}')
    with pytest.raises(ConfigError, match=r"probe.json: not a status probe file: .*host"):
        read_probes(path)


def test_status_json_has_a_schema_version() -> None:
    from nixify.release.ledger import build_ledger

    a = store("nas-1", "b")
    probes = [probe("nas-1", a, [rec("nas-1", a)])]
    ledger = build_ledger({"nas-1": probes[0].records}, [])
    doc = json.loads(fleet_document(fleet_status(probes, ledger), ledger).to_text())
    assert doc["schema"] == STATUS_SCHEMA and doc["hosts"][0]["host"] == "nas-1"
    assert FleetStatus.model_validate(doc | {"future": 1}).hosts[0].host == "nas-1"


# -- the explicit status run ---------------------------------------------------------------


class FakeHost:
    def __init__(self, name: str, facts: dict[str, Any] | None = None,
                 connected: bool = False) -> None:
        self.name = name
        self.data = {"role": "nas"}
        self.connected = connected
        self._facts = facts

    def get_fact(self, fact: type, **kwargs: Any) -> Any:
        assert self._facts is not None
        return self._facts[fact.__name__]


class FakeState:
    def __init__(self, hosts: list[FakeHost]) -> None:
        self.inventory = hosts
        self.failed_hosts: set[Any] = set()
        self.callback_handlers: list[Any] = []

    def is_host_in_limit(self, host: Any) -> bool:
        return True

    def add_callback_handler(self, handler: Any) -> None:
        self.callback_handlers.append(handler)


def test_the_status_probe_is_an_explicit_run_not_an_exit_hook(tmp_path: Path) -> None:
    import operations.release
    from operations.facts import RecordListing
    from operations.status import StatusRun, open_status, status_run_of

    assert not hasattr(operations.release, "start_status")
    assert "atexit" not in (REPO / "operations" / "status.py").read_text()
    out = tmp_path / "probe.json"
    a = store("nas-1", "b")
    listing = RecordListing([rec("nas-1", a)], ["/var/lib/nixify/known-good/bad.json: not JSON"])
    h1 = FakeHost("nas-1", {"SystemState": {"running": a}, "KnownGoodRecords": listing,
                            "PinRoots": {}}, connected=True)
    h2 = FakeHost("nas-2")
    state = FakeState([h1, h2])
    run = StatusRun(out)
    state.add_callback_handler(run)
    assert status_run_of(state) is run and open_status(state) is run
    run.probe_host(h1)
    assert not out.exists()
    run.finish(state)
    run.finish(state)  # once
    one, two = read_probes(out)
    assert one.records[0].closure == a and one.skipped == listing.skipped
    assert not two.reachable and two.error == "did not answer over SSH"


def test_when_no_host_answers_the_connect_callback_ends_the_status_run(tmp_path: Path) -> None:
    from operations.status import StatusRun

    out = tmp_path / "probe.json"
    state = FakeState([FakeHost("nas-1"), FakeHost("nas-2")])
    run = StatusRun(out)
    state.add_callback_handler(run)
    # as pyinfra's State.trigger_callbacks calls it: the handler's method, state first
    run.host_connect_error(state, state.inventory[0], "timed out")
    assert not out.exists()  # one host may still answer
    run.host_connect_error(state, state.inventory[1], "refused")
    hosts = read_probes(out)
    assert [h.error for h in hosts] == ["did not answer over SSH: timed out",
                                       "did not answer over SSH: refused"]


# -- the command -----------------------------------------------------------------------------


def test_a_closed_pipe_ends_status_quietly() -> None:
    """`nixify status | head -1`: no traceback."""
    script = (
        "import sys\n"
        "import nixify.pipeline.cli as cli\n"
        "from nixify.release.status import HostProbe\n"
        "cli.gather = lambda root, inv, limits: [HostProbe(host=f'h-{i}', role='nas', "
        "reachable=False, error='x') for i in range(5000)]\n"
        "cli._inventory = lambda args, root: 'inventories/lab.py'\n"
        "from nixify.cli import main\n"
        "sys.exit(main(['status']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert first.split()[0] == b"HOST"
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141


def test_an_inventory_that_cannot_load_is_one_line(tmp_path: Path) -> None:
    proj = tmp_path / "project"
    shutil.copytree(REPO / "inventories", proj / "inventories",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, NIXIFY_REPO=str(proj), NIXIFY_LAB_DIR=str(tmp_path / "no-lab"))
    env.pop("NIXIFY_INVENTORY", None)
    proc = subprocess.run([str(VENV_BIN / "nixify"), "status", "--inventory",
                           "inventories/lab.py"], cwd=proj, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nixify: error: status: cannot load the inventory "
                               "inventories/lab.py: ")
    assert "no lab in" in lines[0] and "nixify lab up" in lines[0]
    assert proc.stdout == ""
