"""`nixify diff` end to end on this machine's store: inputs, outputs, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from diff_fixtures.nixbuild import build, nix_diff_closures

from nixify.cli import main
from nixify.nix import nix_environ

PKGS = [{"name": "lib-1.0"}, {"name": "app-2.0", "deps": ["lib-1.0"]}, {"name": "gone-1.0"}]
PKGS_NEW = [
    {"name": "lib-1.1", "env": {"PATCHES": "p1"}},
    {"name": "app-2.0", "deps": ["lib-1.1"]},
    {"name": "fresh-0.1"},
]


@pytest.fixture(scope="module")
def pair() -> tuple[str, str]:
    return build(PKGS), build(PKGS_NEW)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["diff", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("use_db", [True, False])
def test_json_report(
    capsys: pytest.CaptureFixture[str], pair: tuple[str, str], use_db: bool
) -> None:
    old, new = pair
    rc, out, _ = run(capsys, old, new, "--json", "--rca", *([] if use_db else ["--no-db"]))
    assert rc == 0
    js = json.loads(out)
    assert [(p["name"], p["old_versions"], p["new_versions"]) for p in js["packages"]] == [
        ("lib", ["1.0"], ["1.1"])
    ]
    assert [a["name"] for a in js["added"]] == ["fresh"]
    assert [r["name"] for r in js["removed"]] == ["gone"]
    assert js["closure"]["old_paths"] == 4 and js["closure"]["new_paths"] == 4
    causes = {c["derivation"]: c for c in js["rca"]["causes"]}
    assert set(causes) == {"lib-1.1", "system"}  # the bump, and the root's changed inputs
    assert {c["kind"] for c in causes["system"]["changes"]} == {"input-added", "input-removed"}


def test_human_report(capsys: pytest.CaptureFixture[str], pair: tuple[str, str]) -> None:
    rc, out, _ = run(capsys, *pair, "--rca")
    assert rc == 0
    assert "Version changes (1):" in out and "lib" in out and "1.0 -> 1.1" in out
    assert "Added packages (1):" in out and "fresh" in out
    assert "Removed packages (1):" in out and "gone" in out
    assert "Closure size: 4 -> 4 paths" in out
    assert "Root causes (2):" in out and "environment PATCHES: ∅ -> 'p1'" in out


def test_nix_style_matches_nix(capsys: pytest.CaptureFixture[str], pair: tuple[str, str]) -> None:
    rc, out, _ = run(capsys, *pair, "--nix-style")
    assert rc == 0 and out == nix_diff_closures(*pair)


def test_expectations_gate_exit_code(
    capsys: pytest.CaptureFixture[str], pair: tuple[str, str]
) -> None:
    rc, out, _ = run(capsys, *pair, "--expect", "app")
    assert rc == 1 and "Drift: FAIL" in out and "package changed lib" in out
    rc, out, _ = run(capsys, *pair, "--expect", "lib,fresh,gone,system")
    assert rc == 0, out
    rc, out, _ = run(capsys, *pair, "--expect", "app", "--accept-drift", "--json")
    assert rc == 0 and json.loads(out)["drift"]["unexpected"]


@pytest.fixture
def tmp_profile(tmp_path: Path, pair: tuple[str, str]) -> Iterator[Path]:
    profile = tmp_path / "profile"
    for path in pair:
        subprocess.run(
            ["nix-env", "-p", str(profile), "--set", path],
            check=True,
            capture_output=True,
            env=nix_environ(),
        )
    yield profile


def test_profiles_and_generation_links(
    capsys: pytest.CaptureFixture[str], tmp_profile: Path, pair: tuple[str, str]
) -> None:
    gen1 = tmp_profile.parent / "profile-1-link"
    rc, out, _ = run(capsys, str(gen1), str(tmp_profile), "--json")
    assert rc == 0
    js = json.loads(out)
    assert (js["closure"]["old"], js["closure"]["new"]) == pair


def test_real_binary(pair: tuple[str, str]) -> None:
    exe = Path(sys.executable).parent / "nixify"
    proc = subprocess.run([str(exe), "diff", *pair], capture_output=True, text=True)
    assert proc.returncode == 0 and "1.0 -> 1.1" in proc.stdout


# -- bad input -------------------------------------------------------------------

FAKE = "/nix/store/" + "n" * 32


def test_not_a_store_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pair: tuple[str, str]
) -> None:
    rc, _, err = run(capsys, str(tmp_path), pair[1])
    assert rc == 2 and f"{tmp_path}: not a Nix store path" in err and "Traceback" not in err


def test_path_that_does_not_exist(
    capsys: pytest.CaptureFixture[str], pair: tuple[str, str]
) -> None:
    missing = f"{FAKE}-never-built-1.0"
    rc, _, err = run(capsys, pair[0], missing)
    assert rc == 2 and f"{missing}: does not exist" in err


def test_garbage_collected_generation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pair: tuple[str, str]
) -> None:
    doomed = build([{"name": "doomed-1.0", "payload": str(tmp_path)}])
    link = tmp_path / "system-7-link"
    link.symlink_to(doomed)
    subprocess.run(
        ["nix-store", "--delete", doomed], check=True, capture_output=True, env=nix_environ()
    )
    rc, _, err = run(capsys, str(link), pair[1])
    assert rc == 2 and str(link) in err and doomed in err and "garbage-collected" in err


@pytest.mark.parametrize("use_db", [True, False])
def test_path_not_valid_in_the_store(
    capsys: pytest.CaptureFixture[str], pair: tuple[str, str], use_db: bool
) -> None:
    ghost = f"{FAKE}-nixify-diff-test-unregistered-{os.getpid()}"
    os.mkdir(ghost)
    try:
        rc, _, err = run(capsys, pair[0], ghost, *([] if use_db else ["--no-db"]))
    finally:
        shutil.rmtree(ghost)
    assert rc == 2 and f"{ghost} is not valid in the store" in err


def test_remote_spec_unknown_host(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, pair: tuple[str, str]
) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host nohost\n  HostName 127.0.0.1\n  Port 1\n  ConnectTimeout 2\n")
    rc, _, err = run(capsys, "nohost:current", pair[1], "--ssh-config", str(cfg))
    assert rc == 2 and "nohost" in err


def test_host_that_looks_like_an_ssh_option(
    capsys: pytest.CaptureFixture[str], pair: tuple[str, str]
) -> None:
    rc, _, err = run(capsys, "-oProxyCommand=touch /tmp/x:current", pair[1])
    assert rc == 2 and "is not a host name" in err
