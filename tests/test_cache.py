"""The cache's parts without a lab: key in sops, config, HTTP server, pool lines."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest
import yaml

from nixify.cache.config import (
    CacheConfig,
    config_path,
    parse_cache_config,
    read_cache_config,
    signing_key_for,
)
from nixify.cache.keys import generate_signing_key, load_signing_key, write_key_secret
from nixify.cache.pool import PoolMember, parse_placement, pool_members
from nixify.cache.server import make_server, resolve
from nixify.errors import ConfigError
from nixify.pipeline.builders import BuilderProbe

PUBKEY = "fleet-cache-1:" + "A" * 43 + "="


# -- the signing key ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def key():  # type: ignore[no-untyped-def]
    return generate_signing_key("test-cache-1")


def test_nix_makes_the_key_and_it_never_prints(key) -> None:  # type: ignore[no-untyped-def]
    assert key.public.startswith("test-cache-1:") and len(key.public.split(":")[1]) == 44
    secret = key.secret_bytes.decode()
    assert secret.startswith("test-cache-1:") and len(secret.split(":")[1]) == 88
    assert secret not in repr(key) and secret not in str(key)
    assert secret.split(":")[1] not in repr(key)


def test_key_round_trips_through_sops_and_is_never_plaintext(key, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                             ) -> None:
    ident = pyrage.x25519.Identity.generate()
    other = pyrage.x25519.Identity.generate()
    path = tmp_path / "builders" / "cache-signing-key.yaml"
    path.parent.mkdir()
    write_key_secret(path, key, [str(ident.to_public())])
    text = path.read_text()
    secret_b64 = key.secret_bytes.decode().split(":")[1]
    assert secret_b64 not in text and "ENC[AES256_GCM" in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    loaded = load_signing_key(path, [ident])
    assert loaded == key and loaded.secret_bytes == key.secret_bytes
    with pytest.raises(ConfigError):
        load_signing_key(path, [other])


def test_the_real_sops_binary_decrypts_the_key_file(key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess

    from nixify.secrets.install import sops_binary_path

    ident = pyrage.x25519.Identity.generate()
    path = tmp_path / "k.yaml"
    write_key_secret(path, key, [str(ident.to_public())])
    env = dict(os.environ, SOPS_AGE_KEY=str(ident))
    out = subprocess.run([sops_binary_path(), "decrypt", str(path)], capture_output=True,
                         text=True, env=env, check=True).stdout
    assert yaml.safe_load(out)["secret_key"] == key.secret_bytes.decode()


def test_a_key_document_with_a_bad_field_is_named(tmp_path: Path) -> None:
    from nixify.secrets.sopsfile import encrypt_tree
    from nixify.secrets.tree import Branch

    ident = pyrage.x25519.Identity.generate()
    path = tmp_path / "k.yaml"
    path.write_text(encrypt_tree(Branch([("name", "x"), ("public_key", PUBKEY)]), "yaml",
                                 [str(ident.to_public())]))
    with pytest.raises(ConfigError, match=r"k.yaml: field 'secret_key'"):
        load_signing_key(path, [ident])
    path.write_text(encrypt_tree(
        Branch([("name", "x"), ("public_key", PUBKEY), ("secret_key", "not a key")]), "yaml",
        [str(ident.to_public())]))
    with pytest.raises(ConfigError, match="field 'secret_key': not a Nix key") as err:
        load_signing_key(path, [ident])
    assert "not a key" not in str(err.value).replace("not a Nix key", "")
    with pytest.raises(ConfigError, match="not found"):
        load_signing_key(tmp_path / "absent.yaml", [ident])


def test_signing_key_for_needs_an_identity(tmp_path: Path) -> None:
    cfg = CacheConfig("http://127.0.0.1:5080", (PUBKEY,))
    load = signing_key_for(cfg, {"secrets_dir": str(tmp_path)})
    with pytest.raises(ConfigError):
        load()


# -- the configuration -------------------------------------------------------------------


def test_config_round_trip_and_host_settings(tmp_path: Path) -> None:
    cfg = CacheConfig("http://127.0.3.14:5080", (PUBKEY,), server_host="nas-1")
    cfg.save(tmp_path / "cache.yaml")
    back = read_cache_config(tmp_path / "cache.yaml")
    assert back == cfg and back.push == cfg.url
    conf = cfg.nix_conf()
    assert "substituters = http://127.0.3.14:5080\n" in conf
    assert f"trusted-public-keys = {PUBKEY}\n" in conf and "require-sigs = true\n" in conf


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"url": "ftp://x", "public_keys": [PUBKEY]}, "url"),
        ({"url": "http://x", "public_keys": []}, "public_keys"),
        ({"url": "http://x", "public_keys": ["nokey"]}, "public_keys"),
        ({"url": "http://x", "public_keys": [PUBKEY], "push_url": "x"}, "push_url"),
        ({"url": "http://x", "public_keys": [PUBKEY], "signing_key": "../k.yaml"}, "signing_key"),
        ({"url": "http://x", "public_keys": [PUBKEY], "colour": "red"}, "colour"),
    ],
)
def test_config_errors_name_the_file_and_field(doc: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=rf"^cache.yaml: field '{field}'"):
        parse_cache_config(doc, "cache.yaml")


def test_config_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIXIFY_CACHE_CONFIG", raising=False)
    lab = tmp_path / "lab"
    lab.mkdir()
    inv = {"default_cache_config": str(lab / "cache.yaml")}  # the inventory's default
    assert config_path(inv) is None  # named, but not there (yet)
    (lab / "cache.yaml").write_text("x")
    assert config_path(inv) == lab / "cache.yaml"
    monkeypatch.setenv("NIXIFY_CACHE_CONFIG", str(tmp_path / "env.yaml"))
    assert config_path(inv) == tmp_path / "env.yaml"
    assert config_path({"cache_config": "/x.yaml"}) == Path("/x.yaml")
    monkeypatch.delenv("NIXIFY_CACHE_CONFIG")
    repo = tmp_path / "repo"
    (repo / "inventories").mkdir(parents=True)
    assert config_path({}, repo) is None
    (repo / "inventories" / "cache.yaml").write_text("x")
    assert config_path({}, repo) == repo / "inventories" / "cache.yaml"


# -- the HTTP cache server ---------------------------------------------------------------


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    srv = make_server(tmp_path / "cache", "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield tmp_path / "cache", srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _req(port: int, method: str, path: str, body: bytes | None = None,
         ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_server_stores_and_serves_uploads(server: tuple[Path, int]) -> None:
    root, port = server
    assert _req(port, "GET", "/nix-cache-info")[1].startswith(b"StoreDir: /nix/store")
    assert _req(port, "HEAD", "/abc.narinfo")[0] == 404
    assert _req(port, "PUT", "/nar/abc.nar.xz", b"x" * 100_000)[0] == 201
    assert _req(port, "GET", "/nar/abc.nar.xz") == (200, b"x" * 100_000)
    assert (root / "nar" / "abc.nar.xz").stat().st_size == 100_000
    assert not list((root / "nar").glob(".upload-*"))


def test_server_refuses_paths_outside_its_directory(server: tuple[Path, int]) -> None:
    root, port = server
    assert _req(port, "PUT", "/../escape", b"x")[0] == 400
    assert _req(port, "PUT", "/a/%2e%2e/%2e%2e/escape", b"x")[0] == 400
    assert not (root.parent / "escape").exists()
    assert resolve(root, "/nar/../../etc/passwd") is None
    assert resolve(root, "/nar/x.nar") == (root / "nar" / "x.nar").resolve()


def test_server_read_only_and_loopback_only(tmp_path: Path) -> None:
    srv = make_server(tmp_path, "127.0.0.1", 0, writable=False)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        assert _req(srv.server_address[1], "PUT", "/x.narinfo", b"x")[0] == 403
    finally:
        srv.shutdown()
        srv.server_close()
    with pytest.raises(SystemExit, match="only loopback"):
        make_server(tmp_path, "0.0.0.0", 0)


# -- the pool ----------------------------------------------------------------------------


def test_pool_members_are_the_other_reachable_builders() -> None:
    probes = {
        "builder-1": BuilderProbe(
            "builder-1", True, frozenset({"x86_64-linux", "aarch64-linux"}), 4
        ),
        "cloud-builder-1": BuilderProbe("cloud-builder-1", True, frozenset({"x86_64-linux"}), 8),
        "down-1": BuilderProbe("down-1", False, error="timed out"),
    }
    data = {
        "builder-1": {"role": "remote_builder", "ssh_hostname": "127.0.3.12"},
        "cloud-builder-1": {"role": "cloud_builder", "ssh_hostname": "127.0.3.13"},
        "down-1": {"role": "cloud_builder"},
    }
    members = pool_members(probes, data, "cloud-builder-1")
    assert [m.machine_line() for m in members] == [
        "ssh-ng://root@127.0.3.12 aarch64-linux,x86_64-linux - 4 2"
    ]
    members = pool_members(probes, data, "builder-1")
    assert [m.machine_line() for m in members] == ["ssh-ng://root@127.0.3.13 x86_64-linux - 8 1"]


def test_placement_is_read_from_nix_own_lines() -> None:
    members = [PoolMember("cloud-builder-1", "ssh-ng://root@127.0.3.13", ("x86_64-linux",), 4, 1)]
    stderr = "\n".join([
        "these 3 derivations will be built:",
        "  /nix/store/aaa-a.drv",
        "building '/nix/store/aaa-a.drv'...",
        "building '/nix/store/bbb-b.drv' on 'ssh-ng://root@127.0.3.13'...",
        "copying path '/nix/store/bbb-b' from 'ssh-ng://root@127.0.3.13'...",
        "building '/nix/store/ccc-c.drv' on 'ssh-ng://other'...",
    ])
    assert parse_placement(stderr, "builder-1", members) == {
        "/nix/store/aaa-a.drv": "builder-1",
        "/nix/store/bbb-b.drv": "cloud-builder-1",
        "/nix/store/ccc-c.drv": "ssh-ng://other",
    }


def test_cache_off_and_lab_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nixify.cache.config import load_cache_config

    monkeypatch.delenv("NIXIFY_CACHE_CONFIG", raising=False)
    CacheConfig("http://127.0.0.1:5080", (PUBKEY,)).save(tmp_path / "cache.yaml")
    inv = {"default_cache_config": str(tmp_path / "cache.yaml")}
    found = load_cache_config(inv)
    assert found is not None and found.url == "http://127.0.0.1:5080"
    assert load_cache_config({**inv, "cache": "off"}) is None
    with pytest.raises(ConfigError, match=r"absent\.yaml: cache configuration not found"):
        load_cache_config({"cache_config": str(tmp_path / "absent.yaml")})


def test_warm_selects_by_role_then_host_glob() -> None:
    from nixify.cache.cli import select

    groups = {
        "nas": [("nas-1", {"role": "nas"}), ("nas-2", {"role": "nas"})],
        "laptop": [("laptop-1", {"role": "laptop"})],
    }
    assert sorted(select(groups, [])) == ["laptop-1", "nas-1", "nas-2"]
    assert sorted(select(groups, ["nas"])) == ["nas-1", "nas-2"]
    assert sorted(select(groups, ["lap*", "nas-2"])) == ["laptop-1", "nas-2"]
    with pytest.raises(ConfigError, match="--limit mainframe: matches no role or host"):
        select(groups, ["mainframe"])


def test_unsigned_substitutes_are_recognised() -> None:
    from nixify.cache.pool import _UNSIGNED

    line = ("warning: the substitute for '/nix/store/x-a' from 'http://127.0.0.1:5080' is not "
            "signed by any of the keys in 'trusted-public-keys'")
    assert _UNSIGNED.search(line)
    assert _UNSIGNED.search("error: cannot add path '/nix/store/x' because it lacks a valid "
                            "signature")
    assert not _UNSIGNED.search("error: build of '/nix/store/x.drv' failed")


def test_lab_key_is_made_once_kept_and_never_overwritten(tmp_path: Path) -> None:
    from nixify.cache.keys import DEFAULT_SECRET
    from nixify.lab.cache import ensure_key
    from nixify.lab.secrets import dummy_document
    from nixify.secrets.rules import CreationRule, render_sops_yaml
    from nixify.secrets.sopsfile import encrypt_tree

    ident = pyrage.x25519.Identity.generate()
    idfile = tmp_path / "operator_age.txt"
    idfile.write_text(f"{ident}\n")
    secrets = tmp_path / "secrets"
    (secrets / "builders").mkdir(parents=True)
    (secrets / ".sops.yaml").write_text(
        render_sops_yaml([CreationRule(DEFAULT_SECRET, (str(ident.to_public()),))]))
    path = secrets / DEFAULT_SECRET
    # the provisioner's placeholder is replaced by a real key
    path.write_text(encrypt_tree(dummy_document(DEFAULT_SECRET), "yaml",
                                 [str(ident.to_public())]))
    first = ensure_key(secrets, DEFAULT_SECRET, idfile, "lab-cache-1")
    assert first.public.startswith("lab-cache-1:")
    assert ensure_key(secrets, DEFAULT_SECRET, idfile, "lab-cache-1") == first  # kept
    # a key file the operator cannot decrypt is an error, and stays as it was
    stranger = pyrage.x25519.Identity.generate()
    write_key_secret(path, generate_signing_key("other-1"), [str(stranger.to_public())])
    before = path.read_bytes()
    with pytest.raises(ConfigError):
        ensure_key(secrets, DEFAULT_SECRET, idfile, "lab-cache-1")
    assert path.read_bytes() == before


def test_a_bad_cache_config_fails_every_host_of_the_run_by_name(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from nixify.pipeline.options import RunOptions
    from operations.build import BuildCoordinator

    bad = tmp_path / "cache.yaml"
    bad.write_text("url: gopher://cache\npublic_keys: []\n")
    data = {"role": "nas", "builders": ["builder-1"]}
    hosts = [SimpleNamespace(name=n, data=dict(data)) for n in ("nas-1", "nas-2")]
    state = SimpleNamespace(inventory=SimpleNamespace(
        get_active_hosts=lambda: hosts,
        get_host=lambda name: SimpleNamespace(name=name, data={"role": "remote_builder"}),
    ))
    options = RunOptions.parse({"cache_config": str(bad)})
    coord = BuildCoordinator(tmp_path, lambda *_: None, tmp_path, options, lambda _h: True)
    for h in hosts:
        out = coord.outcome(state, h)
        assert out.error and out.error.startswith("binary cache: ")
        assert f"{bad}: field 'url'" in out.error and out.closure is None


def test_keygen_cli_writes_only_the_sops_file(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from nixify.cache.keys import DEFAULT_SECRET
    from nixify.cli import main
    from nixify.secrets.rules import CreationRule, render_sops_yaml

    ident = pyrage.x25519.Identity.generate()
    (tmp_path / ".sops.yaml").write_text(
        render_sops_yaml([CreationRule(DEFAULT_SECRET, (str(ident.to_public()),))]))
    argv = ["cache", "keygen", "--name", "fleet-cache-7", "--secrets-dir", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr()
    key = load_signing_key(tmp_path / DEFAULT_SECRET, [ident])
    assert out.out.strip() == key.public
    secret = key.secret_bytes.decode().split(":")[1]
    assert secret not in out.out + out.err
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        ".sops.yaml", "cache-signing-key.yaml"]  # no plaintext key file left anywhere
    assert main(argv) == 2  # an existing key is kept unless --force
    assert "exists; --force" in capsys.readouterr().err
    assert load_signing_key(tmp_path / DEFAULT_SECRET, [ident]) == key
