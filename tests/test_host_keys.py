"""Pinned host keys on the real fleet (issue 17.7) and known_hosts editing (16.11).

The real fleet never trusts a host key on first use: every host of the address
map is pinned (``host_key``, a ``known_hosts_file`` that pins it, the fleet
declaration's ``ssh_host_key`` or the secrets recipients record), the pinned
keys are written to a known_hosts file of their own, and pyinfra and OpenSSH
check them strictly.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from labkit import VENV_BIN

from nixify.errors import ConfigError
from nixify.inventory import fleet_groups, load_address_map, load_fleet, ssh_args_from_data
from nixify.inventory.hostkeys import (
    canonical_key,
    fingerprint,
    parse_known_hosts,
    pinned_keys,
    replace_host_key,
)

REPO = Path(__file__).resolve().parent.parent
HOSTS = REPO / "inventories" / "hosts.yaml"


def new_key(tmp_path: Path, name: str = "k") -> str:
    """A fresh ed25519 public key line, made by ssh-keygen (none kept in the repository)."""
    path = tmp_path / f"{name}_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
                   check=True)
    return Path(f"{path}.pub").read_text().strip()


def address_map(tmp_path: Path, keys: bool = True) -> tuple[Path, dict[str, dict[str, object]]]:
    fleet = load_fleet(HOSTS)
    amap: dict[str, dict[str, object]] = {}
    for i, h in enumerate(fleet):
        entry: dict[str, object] = {"address": f"127.0.0.{20 + i}", "port": 22 if i % 2 else 2222}
        if keys:
            entry["host_key"] = new_key(tmp_path, h.name)
        amap[h.name] = entry
    path = tmp_path / "addresses.yaml"
    path.write_text(yaml.safe_dump(amap))
    return path, amap


def test_a_host_without_a_pinned_key_is_refused_naming_it(tmp_path: Path) -> None:
    path, amap = address_map(tmp_path)
    del amap["nas-1"]["host_key"]
    path.write_text(yaml.safe_dump(amap))
    with pytest.raises(ConfigError) as err:
        load_address_map(load_fleet(HOSTS), path, state=tmp_path / "state")
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 1, lines  # one line, for the one unpinned host
    assert "host 'nas-1'" in lines[0] and "no pinned host key" in lines[0]
    assert "host_key: ssh-ed25519" in lines[0] and "known_hosts_file" in lines[0]
    assert not (tmp_path / "state").exists()  # nothing written for a refused map


def test_every_unpinned_host_is_named(tmp_path: Path) -> None:
    path, _ = address_map(tmp_path, keys=False)
    with pytest.raises(ConfigError) as err:
        load_address_map(load_fleet(HOSTS), path, state=tmp_path / "state")
    fleet = load_fleet(HOSTS)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == len(fleet)
    assert all(f"host {h.name!r}: no pinned host key" in lines[i] for i, h in enumerate(fleet))


def test_host_keys_in_the_map_make_exactly_that_known_hosts_and_strict_data(
    tmp_path: Path,
) -> None:
    path, amap = address_map(tmp_path)
    conns = load_address_map(load_fleet(HOSTS), path, state=tmp_path / "state")
    files = {c.known_hosts_file for c in conns.values()}
    assert len(files) == 1
    known = Path(str(files.pop()))
    assert known.parent.parent == tmp_path / "state"
    expected = set()
    for name, entry in amap.items():
        pattern = entry["address"] if entry["port"] == 22 else f"[{entry['address']}]:2222"
        expected.add(f"{pattern} {' '.join(str(entry['host_key']).split()[:2])}")
        assert conns[name].host_key == " ".join(str(entry["host_key"]).split()[:2])
    assert set(known.read_text().splitlines()) == expected
    assert len(known.read_text().splitlines()) == len(amap)
    # the same keys, the same file; a changed key, another file (a running deploy's
    # file never changes under it)
    again = load_address_map(load_fleet(HOSTS), path, state=tmp_path / "state")
    assert again["nas-1"].known_hosts_file == str(known)
    amap["nas-1"]["host_key"] = new_key(tmp_path, "nas-1-new")
    path.write_text(yaml.safe_dump(amap))
    rotated = load_address_map(load_fleet(HOSTS), path, state=tmp_path / "state")
    assert rotated["nas-1"].known_hosts_file != str(known) and known.is_file()

    data = conns["nas-1"].pyinfra_data()
    assert data["ssh_strict_host_key_checking"] == "yes"
    assert data["ssh_known_hosts_file"] == str(known)
    args = ssh_args_from_data("nas-1", data)
    assert "StrictHostKeyChecking=yes" in args and f"UserKnownHostsFile={known}" in args
    assert args[-1] == f"root@{amap['nas-1']['address']}"


def test_fleet_groups_pin_from_the_recipients_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without host_key in the map, the secrets recipients record pins the hosts."""
    path, amap = address_map(tmp_path)
    record = {"operators": {}, "hosts": {}}
    for name, entry in amap.items():
        record["hosts"][name] = {"ssh_host_key": entry.pop("host_key")}
    path.write_text(yaml.safe_dump(amap))
    (tmp_path / "recipients.yaml").write_text(yaml.safe_dump(record))
    monkeypatch.setenv("NIXIFY_ADDRESSES", str(path))
    monkeypatch.setenv("NIXIFY_STATE_DIR", str(tmp_path / "state"))
    groups = fleet_groups(HOSTS, record=tmp_path / "recipients.yaml")
    data = dict(groups["nas"])["nas-1"]
    assert data["ssh_strict_host_key_checking"] == "yes"
    known = Path(data["ssh_known_hosts_file"]).read_text()
    assert pinned_keys(known, ["[127.0.0.29]:2222", "127.0.0.29"]) == [
        " ".join(record["hosts"]["nas-1"]["ssh_host_key"].split()[:2])
    ]
    with pytest.raises(ConfigError, match="host 'nas-1': no pinned host key"):
        fleet_groups(HOSTS, record=tmp_path / "none.yaml")


def test_a_known_hosts_file_must_pin_its_host(tmp_path: Path) -> None:
    path, amap = address_map(tmp_path)
    own = tmp_path / "my_known_hosts"
    nas = amap["nas-1"]
    pattern = f"[{nas['address']}]:2222" if nas["port"] != 22 else str(nas["address"])
    own.write_text(f"{pattern} {nas['host_key']}\n")
    nas["known_hosts_file"] = str(own)
    path.write_text(yaml.safe_dump(amap))
    conns = load_address_map(load_fleet(HOSTS), path, state=tmp_path / "state")
    assert conns["nas-1"].known_hosts_file == str(own)  # the operator's own file is used
    # a file that does not pin the host is refused, naming host and field
    own.write_text("")
    with pytest.raises(ConfigError, match=r"host 'nas-1': field 'known_hosts_file'.*pins no key"):
        load_address_map(load_fleet(HOSTS), path, state=tmp_path / "state")
    # a file that pins another key than host_key: refused
    own.write_text(f"{pattern} {new_key(tmp_path, 'other')}\n")
    with pytest.raises(ConfigError, match="host 'nas-1': field 'host_key' differs"):
        load_address_map(load_fleet(HOSTS), path, state=tmp_path / "state")


def test_a_bad_host_key_names_host_and_field(tmp_path: Path) -> None:
    path, amap = address_map(tmp_path)
    amap["nas-2"]["host_key"] = "ssh-ed25519 not-base64!"
    path.write_text(yaml.safe_dump(amap))
    with pytest.raises(ConfigError, match="host 'nas-2': field 'host_key'"):
        load_address_map(load_fleet(HOSTS), path, state=tmp_path / "state")


def test_the_fleet_inventory_refuses_an_unpinned_map_before_connecting(tmp_path: Path) -> None:
    """pyinfra loading inventories/fleet.py: one line naming the host, no traceback."""
    path, amap = address_map(tmp_path)
    del amap["laptop-2"]["host_key"]
    path.write_text(yaml.safe_dump(amap))
    proc = subprocess.run(
        [str(VENV_BIN / "pyinfra"), "inventories/fleet.py", "debug-inventory"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, NIXIFY_ADDRESSES=str(path), NIXIFY_STATE_DIR=str(tmp_path / "s")),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "host 'laptop-2': no pinned host key" in out, out
    assert "Traceback" not in out


def test_replace_host_key_keeps_names_drops_stale_types_adds_when_absent(tmp_path: Path) -> None:
    old, new, other = (canonical_key(new_key(tmp_path, n), n) for n in ("old", "new", "other"))
    text = (
        "# a comment\n"
        f"nas-1,[127.0.0.5]:2222 {old} root@nas-1\n"
        f"[127.0.0.5]:2222 ecdsa-sha2-nistp256 {'A' * 20}\n"
        f"nas-2 {other}\n"
    )
    out = replace_host_key(text, ["nas-1", "[127.0.0.5]:2222"], new, "[127.0.0.5]:2222")
    assert out.splitlines() == [
        "# a comment", f"nas-1,[127.0.0.5]:2222 {new} root@nas-1", f"nas-2 {other}"
    ]
    assert replace_host_key(out, ["nas-1"], new, "nas-1") == out  # idempotent
    added = replace_host_key(f"nas-2 {other}\n", ["[127.0.0.9]:2222"], new, "[127.0.0.9]:2222")
    assert added.splitlines()[-1] == f"[127.0.0.9]:2222 {new}"


def test_hashed_known_hosts_entries_are_matched(tmp_path: Path) -> None:
    key = canonical_key(new_key(tmp_path, "h"), "h")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.5]:2222 {key}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")
    assert pinned_keys(known.read_text(), ["[127.0.0.5]:2222"]) == [key]
    assert pinned_keys(known.read_text(), ["[127.0.0.6]:2222"]) == []
    assert parse_known_hosts(known.read_text())[0].key == key


def test_fingerprint_is_openssh_s(tmp_path: Path) -> None:
    line = new_key(tmp_path, "f")
    pub = tmp_path / "f_ed25519.pub"
    ours = fingerprint(canonical_key(line, "f"))
    theirs = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True,
                            text=True, check=True).stdout.split()[1]
    assert ours == theirs
