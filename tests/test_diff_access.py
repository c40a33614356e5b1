"""`nixify diff HOST:current` reaches HOST with the inventory's connection data
(the lab's ssh_config, the fleet's address and key) without --ssh-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from nixify.diff.cli import HostAccess, ssh_runner
from nixify.errors import ConfigError


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "hosts.yaml").write_text("hosts: []\n")
    (tmp_path / "inventories" / "lab.py").write_text(
        'nas = [("nas-1", {"ssh_config": "/lab/ssh_config"})]\n'
        'laptop = [("laptop-1", {"ssh_hostname": "127.0.0.9", "ssh_port": 2222,\n'
        '                        "ssh_key": "/k", "ssh_known_hosts_file": "/kh"})]\n'
    )
    monkeypatch.setenv("NIXIFY_REPO", str(tmp_path))
    monkeypatch.setenv("NIXIFY_INVENTORY", "inventories/lab.py")
    return tmp_path


def test_a_host_is_reached_with_the_inventory_s_connection_data(project: Path) -> None:
    access = HostAccess()
    assert access.ssh_args("nas-1") == ["-F", "/lab/ssh_config", "nas-1"]
    assert ssh_runner("nas-1", access).name == "nas-1"
    args = access.ssh_args("laptop-1")
    assert args[-1] == "root@127.0.0.9" and "/k" in args and "UserKnownHostsFile=/kh" in args
    with pytest.raises(ConfigError, match=r"nas-9: not a host of the inventory inventories/lab"):
        access.ssh_args("nas-9")
    # --ssh-config still wins
    assert HostAccess("/mine").ssh_args("nas-9") == ["-F", "/mine", "nas-9"]


def test_an_inventory_that_does_not_load_is_named(project: Path) -> None:
    (project / "inventories" / "lab.py").write_text("raise SystemExit('no lab here')\n")
    with pytest.raises(ConfigError, match=r"--inventory inventories/lab.py: cannot load"):
        HostAccess().ssh_args("nas-1")
