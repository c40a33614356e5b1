"""`nixify diff HOST:current` over real SSH against lab hosts (real sshd, own stores)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from diff_fixtures.nixbuild import nix_diff_closures
from labkit import ssh

from nixify.cli import main
from nixify.diff import diff_closures, query_closure
from nixify.diff.cli import ssh_runner
from nixify.errors import ConfigError
from nixify.lab import LabState

pytestmark = pytest.mark.lab


def test_host_current_over_ssh(
    capsys: pytest.CaptureFixture[str], make_lab: Callable[[str, int, str], LabState]
) -> None:
    lab = make_lab("diff", 2, "127.0.47")
    a, b = lab.hosts[0], lab.hosts[1]
    current = ssh(lab, a.name, "readlink -e /run/current-system").stdout.strip()
    assert current == a.initial_system

    # The host resolves its link and sends only path metadata; same closure, no change.
    remote = query_closure(ssh_runner(a.name, lab.ssh_config), "/run/current-system")
    assert remote.root == a.initial_system and remote.source == a.name
    assert (
        main(
            [
                "diff",
                f"{a.name}:current",
                a.initial_system,
                "--ssh-config",
                lab.ssh_config,
                "--json",
            ]
        )
        == 0
    )
    js = json.loads(capsys.readouterr().out)
    assert js["counts"]["changed"] == js["counts"]["added"] == js["counts"]["removed"] == 0
    assert js["closure"]["old"] == a.initial_system

    # Two hosts' running systems, read over ssh, equal the local cross-check
    # (the lab built both systems on this machine, so Nix can diff them here).
    rc = main(
        [
            "diff",
            f"{a.name}:current",
            f"{b.name}:current",
            "--ssh-config",
            lab.ssh_config,
            "--nix-style",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and out == nix_diff_closures(a.initial_system, b.initial_system)
    over_ssh = diff_closures(
        remote, query_closure(ssh_runner(b.name, lab.ssh_config), "/run/current-system")
    )
    assert over_ssh.version_findings()

    # The derivations are on this machine (the lab's builder of record): RCA works.
    rc = main(
        [
            "diff",
            f"{a.name}:current",
            f"{b.name}:current",
            "--ssh-config",
            lab.ssh_config,
            "--rca",
            "--json",
        ]
    )
    js = json.loads(capsys.readouterr().out)
    assert rc == 0 and js["rca"]["causes"] and js["rca"]["counts"]["unexplained_paths"] == 0

    # Derivations read on a host that does not have them: the version diff
    # stands, and the RCA names what it could not explain and why.
    rc = main(
        [
            "diff",
            f"{a.name}:current",
            f"{b.name}:current",
            "--ssh-config",
            lab.ssh_config,
            "--rca",
            "--drvs-from",
            b.name,
            "--json",
        ]
    )
    js = json.loads(capsys.readouterr().out)
    assert rc == 0 and js["rca"]["causes"] == []
    assert js["counts"]["changed"] + js["counts"]["added"] + js["counts"]["removed"] > 0
    reasons = {u["reason"] for u in js["rca"]["unexplained"]}
    assert reasons and all(f"not available on {b.name}" in r for r in reasons)

    # Bad input on the host names the host and the path.
    with pytest.raises(
        ConfigError, match=f"{a.name}: /nix/store/n{{32}}-gone is not valid in the store"
    ):
        query_closure(ssh_runner(a.name, lab.ssh_config), "/nix/store/" + "n" * 32 + "-gone")
    rc = main(["diff", f"{a.name}:/etc", a.initial_system, "--ssh-config", lab.ssh_config])
    err = capsys.readouterr().err
    assert rc == 2 and f"{a.name}: /etc is not a Nix store path" in err
