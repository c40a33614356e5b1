"""Push-time checks routed to a real builder over SSH (an sshd of our own on 127.0.0.x)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_gitgate_hooks import (  # noqa: F401 - fixtures
    commit,
    operator_key,
    remote,
    repo,
    run,
    signers,
)

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.214"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(SSHD) or shutil.which("unshare") is None,
    reason="needs root, sshd and unshare for a private /run",
)


@dataclass(frozen=True)
class SshBuilder:
    spec: str
    ssh_args: str
    dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def builder(tmp_path: Path) -> Iterator[SshBuilder]:
    d = tmp_path / "builder"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(d / name)],
            check=True,
        )
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = _free_port()
    host_pub = (d / "host.pub").read_text().split()
    (d / "known_hosts").write_text(f"[{HOST}]:{port} {host_pub[0]} {host_pub[1]}\n")
    (d / "sshd_config").write_text(
        f"ListenAddress {HOST}:{port}\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {d}/sshd.pid\n"
    )
    # A private /run (sshd wants /run/sshd) so the machine's own /run is untouched.
    script = (
        f"mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && exec {SSHD} -D -e "
        f"-f {d}/sshd_config"
    )
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        stdout=subprocess.DEVNULL, stderr=(d / "sshd.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"test sshd did not start: {(d / 'sshd.log').read_text()}")
                time.sleep(0.05)
        yield SshBuilder(
            f"ssh://root@{HOST}:{port}",
            f"-i {d}/client -o UserKnownHostsFile={d}/known_hosts -o StrictHostKeyChecking=yes",
            d,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_constrained_host_runs_checks_on_the_builder(
    repo: Path, remote: Path, builder: SshBuilder  # noqa: F811
) -> None:
    marker = builder.dir / "ran-on-builder"
    run(repo, "checkout", "-q", "-b", "claude/ci/routed")
    commit(repo, "c.txt", "ci: routed")
    run(repo, "config", "nixify.builder", builder.spec)
    run(repo, "config", "nixify.builderSshArgs", builder.ssh_args)
    run(repo, "config", "--add", "nixify.check",
        f"test -f c.txt && printf '%s' \"$SSH_CONNECTION\" > {marker}")
    proc = run(repo, "push", "origin", "claude/ci/routed", NIX_CONFIG="max-jobs = 0")
    assert f"running checks on builder {builder.spec}" in proc.stderr
    assert "SKIPPED" not in proc.stdout + proc.stderr
    # $SSH_CONNECTION is "client-ip client-port server-ip server-port": it ran over SSH.
    assert marker.read_text().split()[2:] == [HOST, builder.spec.rsplit(":", 1)[1]]

    run(repo, "config", "--add", "nixify.check", "exit 4")
    commit(repo, "d.txt", "ci: failing on the builder")
    proc = run(repo, "push", "origin", "claude/ci/routed", ok=False, NIX_CONFIG="max-jobs = 0")
    assert proc.returncode != 0 and "checks failed on builder" in proc.stderr
