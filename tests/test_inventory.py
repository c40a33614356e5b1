"""Typed host data: every malformed datum fails on load, naming host and field,
before pyinfra connects to anything."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from labkit import REPO, VENV_BIN

from nixify.errors import ConfigError
from nixify.inventory import ROLES, build_fleet, load_address_map, load_fleet
from nixify.secrets.sopsfile import decrypt_file

HOSTS = REPO / "inventories" / "hosts.yaml"


def _doc() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(HOSTS.read_text())


def _fleet_with(host_patch: dict, name: str = "nas-2") -> None:  # type: ignore[type-arg]
    doc = _doc()
    for entry in doc["hosts"]:
        if entry["name"] == name:
            entry.update(host_patch)
    build_fleet(doc["roles"], doc["hosts"], "hosts.yaml")


def test_declared_fleet_is_valid_and_spread_over_every_role() -> None:
    fleet = load_fleet(HOSTS)
    assert len(fleet) == 15
    assert {h.role for h in fleet} == set(ROLES)
    for h in fleet:
        if h.role in ("wsl_dev", "laptop", "edge_ml"):
            assert h.constrained and h.max_jobs == 0
        assert h.system_attr == f"hosts.{h.name}"
        assert h.builders, h.name
    assert fleet["edge-ml-1"].nix_system == "aarch64-linux"


def test_every_host_has_a_system_in_fleet_and_the_same_role() -> None:
    fleet = load_fleet(HOSTS)
    files = {p.stem for p in (REPO / "fleet" / "hosts").glob("*.nix")}
    assert files == set(fleet.hosts)
    for h in fleet:
        text = (REPO / "fleet" / "hosts" / f"{h.name}.nix").read_text()
        assert f'role = "{h.role}"' in text, h.name


@pytest.mark.parametrize(
    ("patch", "field", "needle"),
    [
        ({"role": "mainframe"}, "role", "mainframe"),
        ({"nix_system": "riscv64-linux"}, "nix_system", "x86_64-linux"),
        ({"max_jobs": -1}, "max_jobs", "greater than or equal"),
        ({"builders": ["nas-1"]}, "builders", "not a builder"),
        ({"builders": ["ghost-1"]}, "builders", "unknown host"),
        ({"secrets": ["../etc/shadow.yaml"]}, "secrets", "relative path"),
        ({"ssh_host_key": "ssh-rsa AAAAB3NzaC1yc2E"}, "ssh_host_key", "ssh-ed25519"),
        ({"system_attr": "hosts.nas 2"}, "system_attr", "attribute"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
    ],
)
def test_malformed_datum_names_host_and_field(patch: dict, field: str, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        _fleet_with(patch)
    msg = str(err.value)
    assert "'nas-2'" in msg and f"'{field}'" in msg and needle in msg, msg


def test_constrained_host_with_build_jobs_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        _fleet_with({"max_jobs": 2}, name="laptop-2")
    msg = str(err.value)
    assert "'laptop-2'" in msg and "max_jobs" in msg and "constrained" in msg


def test_duplicate_host_names_are_refused() -> None:
    doc = _doc()
    doc["hosts"].append({"name": "nas-3", "role": "nas"})
    with pytest.raises(ConfigError) as err:
        build_fleet(doc["roles"], doc["hosts"], "hosts.yaml")
    assert "'nas-3'" in str(err.value) and "duplicate" in str(err.value)


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "hosts.yaml"
    bad.write_text("roles: {}\nroles: {}\nhosts: []\n")
    with pytest.raises(ConfigError, match="'roles' is given twice"):
        load_fleet(bad)


def _host_key() -> str:
    """A fresh ed25519 public key line (no key is kept in the repository)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def test_missing_address_map_says_how_to_provide_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NIXIFY_ADDRESSES", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="NIXIFY_ADDRESSES"):
        load_address_map(load_fleet(HOSTS))


def test_address_map_names_missing_and_unknown_hosts(tmp_path: Path) -> None:
    fleet = load_fleet(HOSTS)
    m = {h.name: {"address": "127.0.0.1", "port": 22, "host_key": _host_key()} for h in fleet}
    del m["nas-1"]
    m["ghost-9"] = {"address": "127.0.0.1"}
    m["nas-2"]["port"] = 99999
    path = tmp_path / "addresses.yaml"
    path.write_text(yaml.safe_dump(m))
    with pytest.raises(ConfigError) as err:
        load_address_map(fleet, path, state=tmp_path)
    msg = str(err.value)
    assert "'nas-1'" in msg and "'address'" in msg
    assert "'ghost-9'" in msg
    assert "'nas-2'" in msg and "'port'" in msg


class _Listener:
    """A TCP listener on loopback that counts connections (proof nothing connected)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


def _project_copy(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(REPO / "inventories", root / "inventories")
    shutil.copytree(REPO / "tests" / "deploys", root / "deploys")
    return root


def _run_fleet_inventory(root: Path, addresses: Path) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        NIXIFY_ADDRESSES=str(addresses),
        NIXIFY_STATE_DIR=str(addresses.parent / "state"),  # the pinned known_hosts
    )
    return subprocess.run(
        [str(VENV_BIN / "pyinfra"), "-y", "inventories/fleet.py", "deploys/facts.py"],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_good_inventory_does_connect_so_the_probe_is_real(tmp_path: Path) -> None:
    listener = _Listener()
    try:
        root = _project_copy(tmp_path)
        fleet = load_fleet(root / "inventories" / "hosts.yaml")
        amap = {h.name: {"address": "127.0.0.1", "port": listener.port, "host_key": _host_key()}
                for h in fleet}
        (tmp_path / "a.yaml").write_text(yaml.safe_dump(amap))
        _run_fleet_inventory(root, tmp_path / "a.yaml")
    finally:
        listener.close()
    assert listener.accepted > 0


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"role": "mainframe"}, "field 'role'"),
        ({"nix_system": "mips-linux"}, "field 'nix_system'"),
        ({"max_jobs": 3}, "field 'max_jobs'"),
    ],
)
def test_bad_datum_fails_before_any_connection(tmp_path: Path, patch: dict, needle: str) -> None:  # type: ignore[type-arg]
    listener = _Listener()
    try:
        root = _project_copy(tmp_path)
        hosts = root / "inventories" / "hosts.yaml"
        doc = yaml.safe_load(hosts.read_text())
        doc["hosts"][0].update(patch)
        hosts.write_text(yaml.safe_dump(doc))
        fleet_names = [e["name"] for e in doc["hosts"]]
        amap = {n: {"address": "127.0.0.1", "port": listener.port, "host_key": _host_key()}
                for n in fleet_names}
        (tmp_path / "a.yaml").write_text(yaml.safe_dump(amap))
        proc = _run_fleet_inventory(root, tmp_path / "a.yaml")
    finally:
        listener.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"host '{doc['hosts'][0]['name']}'" in out and needle in out, out
    assert "Traceback" not in out
    assert listener.accepted == 0


def test_sops_encrypted_address_map_is_read_with_the_operator_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The private map may be kept sops-encrypted (by the real sops binary)."""
    keygen = subprocess.run(["age-keygen", "-o", str(tmp_path / "keys.txt")],
                            capture_output=True, text=True, check=True)
    recipient = keygen.stderr.split("Public key: ")[1].strip()
    fleet = load_fleet(HOSTS)
    plain = tmp_path / "addresses.yaml"
    plain.write_text(yaml.safe_dump({h.name: {"address": "127.0.0.1", "port": 2200 + i,
                                              "host_key": _host_key()}
                                     for i, h in enumerate(fleet)}))
    enc = tmp_path / "addresses.sops.yaml"
    proc = subprocess.run([str(VENV_BIN / "sops"), "encrypt", "--age", recipient, str(plain)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    enc.write_text(proc.stdout)
    plain.unlink()
    assert "2200" not in enc.read_text()
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "keys.txt"))
    conns = load_address_map(fleet, enc, decrypt=decrypt_file, state=tmp_path / "state")
    assert conns["wsl-dev-1"].port == 2200 and conns["operator-2"].port == 2214
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError):
        load_address_map(fleet, enc, decrypt=decrypt_file)
