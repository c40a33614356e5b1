"""The deploy lock on a real host: 20 operators (processes) race for the same stale
lock; exactly one wins, every other is refused naming the winner, and the lock
is never visible without its complete holder record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from labkit import ssh

from nixify.lab import LabState
from nixify.pipeline.lock import (
    LOCK_DIR,
    LockHolder,
    drop_lock,
    machine_id,
    process_start,
    take_lock,
)
from nixify.transport import SshTransport

pytestmark = pytest.mark.lab

RACERS = 20

RACER = textwrap.dedent(
    """
    import json, os, sys, time
    from nixify.pipeline.lock import LockHolder, machine_id, process_start, take_lock
    from nixify.transport import SshTransport

    config, host, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    me = LockHolder(operator="op-" + str(os.getpid()), machine_id=machine_id(), user="root",
                    pid=os.getpid(), pid_start=process_start(os.getpid()),
                    since="2026-12-02T00:00:00+00:00", token="t%d" % os.getpid())
    transport = SshTransport(host, ["-F", config, host])
    transport.run("true")  # connected before the start line, so all race at once
    while time.time() < start:
        time.sleep(0.005)
    why = take_lock(transport, me, lambda m: None)
    print(json.dumps({"token": me.token, "who": me.describe(), "why": why}))
    time.sleep(3)  # stay alive: the winner's lock is live while the others look
    """
)

WATCH = (
    # on the host: every 5 ms, a lock directory without a complete holder is a violation
    "end=$(( $(date +%s) + {seconds} )); bad=0; "
    "while [ $(date +%s) -lt $end ]; do "
    f"if [ -d {LOCK_DIR} ] && ! grep -q '\"token\"' {LOCK_DIR}/holder.json 2>/dev/null "
    f"&& [ -d {LOCK_DIR} ]; then bad=$((bad+1)); fi; sleep 0.005; done; echo BAD=$bad"
)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_twenty_operators_race_for_one_stale_lock(
    make_lab: Callable[[str, int, str], LabState], tmp_path: Path
) -> None:
    state = make_lab("lock", 2, "127.0.45")
    host = state.hosts[0].name
    # a lock left by a deploy of this machine whose process is gone
    stale = LockHolder(operator="gone", machine_id=machine_id(), user="root", pid=dead_pid(),
                       pid_start=process_start(1) + "0", since="2026-12-01T00:00:00+00:00",
                       token="stale")
    ssh(state, host, f"mkdir -p {LOCK_DIR} && printf %s '{stale.to_json()}' > "
                     f"{LOCK_DIR}/holder.json")
    racer = tmp_path / "racer.py"
    racer.write_text(RACER)
    start = time.time() + 4
    watcher = subprocess.Popen(["ssh", *state.ssh_args(host), WATCH.format(seconds=9)],
                               stdout=subprocess.PIPE, text=True)
    procs = [
        subprocess.Popen([sys.executable, str(racer), state.ssh_config, host, str(start)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(RACERS)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    winners = [r for r in results if r["why"] is None]
    assert len(winners) == 1, results
    winner = winners[0]
    on_host = LockHolder.from_json(ssh(state, host, f"cat {LOCK_DIR}/holder.json").stdout)
    assert on_host is not None and on_host.token == winner["token"]
    for r in results:
        if r is not winner:
            assert r["why"] == f"deploy lock held by {winner['who']}", r
    watched, _ = watcher.communicate(timeout=60)
    assert watched.strip().endswith("BAD=0"), watched


def test_a_live_lock_is_never_taken_and_its_holder_is_named(
    make_lab: Callable[[str, int, str], LabState],
) -> None:
    state = make_lab("lock", 2, "127.0.45")
    host = state.hosts[1].name
    transport = SshTransport(host, state.ssh_args(host))
    me = LockHolder(operator="a", machine_id=machine_id(), user="root", pid=os.getpid(),
                    pid_start=process_start(os.getpid()), since="2026-12-02T00:00:00+00:00",
                token="live")
    other = me.model_copy(update={"operator": "b", "token": "other"})
    assert take_lock(transport, me, lambda m: None) is None
    assert take_lock(transport, other, lambda m: None) == f"deploy lock held by {me.describe()}"
    assert drop_lock(transport, "other") is None  # not its lock: nothing released
    assert ssh(state, host, f"test -d {LOCK_DIR}", check=False).returncode == 0
    assert drop_lock(transport, "live") is None
    assert ssh(state, host, f"test -d {LOCK_DIR}", check=False).returncode != 0
    assert take_lock(transport, other, lambda m: None) is None


def test_a_lock_from_another_machine_is_stale_once_its_ssh_session_is_gone(
    make_lab: Callable[[str, int, str], LabState],
) -> None:
    from nixify.transport import close_all

    state = make_lab("lock", 2, "127.0.45")
    host = state.hosts[0].name
    ssh(state, host, f"rm -rf {LOCK_DIR}")
    elsewhere = LockHolder(operator="laptop-of-bob", machine_id="another-machine", user="bob",
                           pid=4242, pid_start="1", since="2026-12-02T00:00:00+00:00",
                           token="bob")
    bob = SshTransport(host, state.ssh_args(host))  # one connection, kept open
    assert take_lock(bob, elsewhere, lambda m: None) is None
    me = LockHolder(operator="a", machine_id=machine_id(), user="root", pid=os.getpid(),
                    pid_start=process_start(os.getpid()), since="2026-12-02T00:00:01+00:00",
                    token="me")
    said: list[str] = []
    mine = SshTransport(host, ["-o", "ControlPath=none", *state.ssh_args(host)],
                        multiplex=False)
    # bob's deploy is connected: his lock is live, though no process of this machine holds it
    assert take_lock(mine, me, said.append) == f"deploy lock held by {elsewhere.describe()}"
    close_all()  # bob's operator is killed: its SSH connection ends with it
    time.sleep(0.5)
    assert take_lock(mine, me, said.append) is None  # not two hours later
    assert said and "SSH session from laptop-of-bob is gone" in said[-1]
