"""The transport on real SSH: scripts and argvs, a host that is down, and a detached
job that outlives every SSH session of its host."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nixify.lab import LabState, control
from nixify.transport import Completed, HostUnreachable, SshTransport, close_all

pytestmark = pytest.mark.lab


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _kill_sessions(state: LabState, name: str) -> int:
    """SIGKILL every SSH session of the host: the children of its sshd listener (the
    host's namespace init starts that listener; the init itself and everything else
    of the host live on)."""
    host = state.host(name)
    assert control.host_alive(host)
    tree, todo = [], [host.pid]
    while todo:
        pid = todo.pop()
        kids = _children(pid)
        tree.extend(kids)
        todo.extend(kids)
    listeners = [p for p in tree if _comm(p) == "sshd" and _comm(_parent(p)) != "sshd"]
    killed = 0
    for listener in listeners:
        for pid in _children(listener):
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def test_transport_on_the_lab(make_lab: Callable[[str, int, str], LabState]) -> None:
    state = make_lab("transport", 2, "127.0.41")
    a, b = (h.name for h in state.hosts)
    t = SshTransport(a, state.ssh_args(a))

    res = t.run(["printf", "%s|", "two words", "it's", 'say "hi"', "line\nbreak", "$HOME"])
    assert res == Completed(a, res.command, 0, "two words|it's|say \"hi\"|line\nbreak|$HOME|", "")
    res = t.run("echo out; echo err >&2; exit 255")  # the command's own 255 is not "down"
    assert (res.rc, res.stdout, res.stderr) == (255, "out\n", "err\n")
    assert t.run("cat; printf tail", stdin=b"\x00in\n").stdout == "\x00in\ntail"
    assert t.run("readlink /run/current-system", check=True).stdout.startswith("/nix/store/")
    t.write_file("/var/lib/nixify/transport-test", b"one\x00two", mode=0o644)
    assert t.read_file("/var/lib/nixify/transport-test") == b"one\x00two"
    assert t.read_file("/var/lib/nixify/absent") is None

    # A detached job outlives every SSH session of its host; a command in flight
    # when they go is HostUnreachable, not a failed command.
    t.start_detached("lab-job", "sleep 2; echo done; exit 3")
    in_flight: list[BaseException] = []

    def long_command() -> None:
        try:
            SshTransport(a, state.ssh_args(a)).run("sleep 30", timeout=60)
        except BaseException as exc:
            in_flight.append(exc)

    worker = threading.Thread(target=long_command)
    worker.start()
    time.sleep(0.5)
    assert _kill_sessions(state, a) >= 1
    worker.join(30)
    assert not worker.is_alive()
    assert len(in_flight) == 1 and isinstance(in_flight[0], HostUnreachable), in_flight
    assert a in str(in_flight[0])
    close_all()  # the operator's side starts over: new connections only
    again = SshTransport(a, state.ssh_args(a))
    outcome = again.wait_detached("lab-job", timeout=30, poll=0.2)
    assert (outcome.host, outcome.rc, outcome.log) == (a, 3, "done\n")
    again.start_detached("lab-job", "sleep 2; echo done; exit 3")  # never runs twice
    assert again.run("cat /var/lib/nixify/jobs/lab-job/log").stdout == "done\n"

    # A host that is down: HostUnreachable, naming it.
    control.stop_host(Path(state.dir), b)
    started = time.monotonic()
    with pytest.raises(HostUnreachable, match=rf"^{b}: did not answer") as caught:
        SshTransport(b, state.ssh_args(b)).run(["true"])
    assert "refused" in caught.value.reason.lower() or "closed" in caught.value.reason.lower()
    assert time.monotonic() - started < 15
    assert t.run("true").ok  # the other host is unaffected
