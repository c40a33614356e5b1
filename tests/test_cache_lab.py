"""The signed cache and the builder pool end to end: 6 real hosts, real Nix, real SSH.

One lab (builders, a WSL box, a laptop, a NAS serving the cache, the aarch64
edge node) and one project repository; the tests run in order, each starting
from what the previous one left. Every command's output is kept, and the last
test checks that the cache's secret key appears in none of it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import (
    LAB_ROOT,
    REPO,
    VENV_BIN,
    bring_up,
    edit,
    git,
    latest_report,
    pins,
    project_copy,
    pyinfra,
    running,
    ssh,
)

from nixify.cache.keys import (
    DEFAULT_SECRET,
    generate_signing_key,
    load_signing_key,
    recipients_for,
    write_key_secret,
)
from nixify.cache.pool import source_archive
from nixify.lab import LabState, control
from nixify.secrets.keys import identities_from_file

pytestmark = pytest.mark.lab

BUILDERS = ("builder-1", "cloud-builder-1")
OUTPUTS: list[str] = []  # everything any command printed, for the leak check


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    directory = LAB_ROOT / "cache"
    control.down(directory)
    for leftover in ("secrets", "cache.yaml", "operator_age.txt"):
        path = directory / leftover
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    state = bring_up("cache", 6, "127.0.3")
    yield state
    control.down(Path(state.dir))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_copy(tmp_path_factory.mktemp("cache") / "project")


def nixify(lab: LabState, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    proc = subprocess.run(
        [str(VENV_BIN / "nixify"), *args], cwd=project, capture_output=True, text=True,
        env=dict(os.environ, NIXIFY_LAB_DIR=lab.dir, NIXIFY_REPO=str(project)), timeout=600,
    )
    OUTPUTS.extend([proc.stdout, proc.stderr])
    return proc


def deploy(lab: LabState, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = pyinfra(lab, "-y", "inventories/lab.py", "deploy.py", "--data", "release=off", *args,
                   cwd=project, timeout=300)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    return proc


def drv_logs(lab: LabState, host: str) -> set[str]:
    out = ssh(lab, host, "find /nix/var/log/nix/drvs -type f 2>/dev/null; true").stdout
    return {Path(p).name for p in out.split()}


def placement_counts(stderr: str) -> dict[str, int]:
    """Builds per builder, summed over the evaluators' "evaluated ... (N on B, ...)" lines."""
    import re

    counts: dict[str, int] = {}
    for line in stderr.splitlines():
        m = re.match(r"^\[\S+\] evaluated .* built \((.*)\) in ", line)
        for n, b in re.findall(r"(\d+) on ([\w-]+)", m.group(1) if m else ""):
            counts[b] = counts.get(b, 0) + int(n)
    return counts


def commit_change(project: Path, old: str, new: str, message: str,
                  file: str = "packages.nix") -> None:
    edit(project / "fleet" / file, old, new)
    git(project, "commit", "-qam", message)


def test_1_cache_warm_then_a_deploy_builds_nothing_and_fetches(lab: LabState, project: Path,
                                                               ) -> None:
    setup = nixify(lab, project, "cache", "lab-setup")
    assert setup.returncode == 0, setup.stderr
    conf = ssh(lab, "wsl-dev-1", "nix show-config").stdout
    assert "require-sigs = true" in conf and f"substituters = http://{lab.net}." in conf
    commit_change(project, 'pname = "tmux"; version = "3.4"', 'pname = "tmux"; version = "3.5"',
                  "feat(dev): tmux 3.5")
    warm = nixify(lab, project, "cache", "warm", "-i", "inventories/lab.py", "--json")
    assert warm.returncode == 0, warm.stdout + warm.stderr
    doc = json.loads(warm.stdout)
    assert {h["host"]: h["status"] for h in doc["hosts"]} == {
        h.name: "pushed" for h in lab.hosts
    }
    # warm deployed nothing: every host still runs its first system
    for h in lab.hosts:
        assert running(lab, h.name) == h.initial_system
    logs = {b: drv_logs(lab, b) for b in BUILDERS}
    proc = deploy(lab, project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {b: drv_logs(lab, b) for b in BUILDERS} == logs  # built nothing anywhere
    report = latest_report(project)["hosts"]
    for h in lab.hosts:
        assert report[h.name]["status"] == "deployed", (h.name, report[h.name])
        assert report[h.name]["gates"]["build"]["evidence"]["derivations_built"] == 0
    for name in ("wsl-dev-1", "laptop-1"):  # tmux 3.5 came from the cache
        assert "tmux-3.5" in ssh(lab, name, "cat /run/current-system/packages").stdout
        fetched = [ln for ln in proc.stderr.splitlines()
                   if ln.startswith(f"[{name}] fetched ") and f"from http://{lab.net}." in ln]
        assert fetched and not fetched[0].startswith(f"[{name}] fetched 0 "), proc.stderr[-2000:]
        assert drv_logs(lab, name) == set()
    # the cache holds signed narinfos only
    cache_dir = Path(lab.host("nas-1").root) / "var-lib-nixify" / "cache"
    narinfos = list(cache_dir.glob("*.narinfo"))
    assert narinfos and all("Sig: nixify-lab-cache-1:" in p.read_text() for p in narinfos)


def test_2_a_40_derivation_change_spreads_over_both_builders(lab: LabState, project: Path,
                                                             ) -> None:
    commit_change(project, 'pname = "glibc"; version = "2.39-52"',
                  'pname = "glibc"; version = "2.39-53"', "feat: glibc 2.39-53")
    logs = {b: drv_logs(lab, b) for b in BUILDERS}
    proc = deploy(lab, project, "--data", "mode=dry")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    new = {b: drv_logs(lab, b) - logs[b] for b in BUILDERS}
    # cloud-builder-1's builds are its own; builder-1 evaluated, so it also keeps
    # the log of every build it handed out (Nix logs remote builds on the dispatcher)
    assert len(new["builder-1"] | new["cloud-builder-1"]) >= 40
    assert new["cloud-builder-1"], "nothing landed on cloud-builder-1"
    assert len(new["builder-1"] - new["cloud-builder-1"]) > 0  # and some stayed local
    placed = placement_counts(proc.stderr)
    assert placed.get("builder-1", 0) > 0 and placed.get("cloud-builder-1", 0) > 0, placed
    for b in BUILDERS:  # every build a builder is said to have run left its log there
        assert len(new[b]) >= placed[b], (b, placed, len(new[b]))


def test_3_one_builder_down_all_builds_on_the_other(lab: LabState, project: Path) -> None:
    commit_change(project, 'pname = "glibc"; version = "2.39-53"',
                  'pname = "glibc"; version = "2.39-54"', "feat: glibc 2.39-54")
    control.stop_host(Path(lab.dir), "builder-1")
    try:
        logs = drv_logs(lab, "cloud-builder-1")
        proc = deploy(lab, project, "--limit", "wsl_dev", "--limit", "laptop", "--limit", "nas",
                      "--limit", "edge_ml")
        assert proc.returncode != 0  # the edge node has no aarch64 builder left
        report = latest_report(project)["hosts"]
        for name in ("wsl-dev-1", "laptop-1", "nas-1"):
            assert report[name]["status"] == "deployed", (report[name], proc.stderr[-4000:])
            assert report[name]["builder"] == "cloud-builder-1"
            assert "glibc-2.39-54" in ssh(lab, name, "cat /run/current-system/packages").stdout
        edge = report["edge-ml-1"]
        assert edge["status"] == "skipped"
        assert "cloud-builder-1: does not build aarch64-linux" in edge["reason"]
        assert "builder-1: unreachable" in edge["reason"]
        assert len(drv_logs(lab, "cloud-builder-1") - logs) >= 20
        assert "[builder-1] builder unreachable" in proc.stderr
        warm = nixify(
            lab, project, "cache", "warm", "-i", "inventories/lab.py", "--limit", "edge_ml",
            "--limit", "nas",
        )
        assert warm.returncode == 1
        rows = {ln.split()[0]: ln for ln in warm.stdout.splitlines() if ln.strip()}
        assert rows["nas-1"].split()[1:3] == ["pushed", "cloud-builder-1"]
        assert rows["edge-ml-1"].split()[1] == "skipped"
        assert "cloud-builder-1: does not build aarch64-linux" in rows["edge-ml-1"]
        summary = proc.stderr[proc.stderr.rfind("did not pass"):]  # the run's summary
        assert "edge-ml-1" in summary and "no builder reachable" in summary
    finally:
        control.start_host(Path(lab.dir), "builder-1")


def test_4_no_builder_constrained_hosts_are_skipped_visibly(lab: LabState, project: Path,
                                                            ) -> None:
    commit_change(project, 'pname = "ripgrep"; version = "14.1.0"',
                  'pname = "ripgrep"; version = "14.1.1"', "feat(dev): ripgrep 14.1.1")
    before = {n: (running(lab, n), drv_logs(lab, n)) for n in ("wsl-dev-1", "laptop-1")}
    for b in BUILDERS:
        control.stop_host(Path(lab.dir), b)
    try:
        proc = deploy(lab, project, "--limit", "wsl_dev", "--limit", "laptop")
        assert proc.returncode != 0
        report = latest_report(project)["hosts"]
        for n in ("wsl-dev-1", "laptop-1"):
            assert report[n]["status"] == "skipped"
            assert "no builder reachable" in report[n]["reason"]
            assert f"[{n}] gate build: SKIPPED: no builder reachable" in proc.stderr
            assert (running(lab, n), drv_logs(lab, n)) == before[n]
    finally:
        for b in BUILDERS:
            control.start_host(Path(lab.dir), b)


def _refused(lab: LabState, project: Path, host: str) -> None:
    good, old_pins = running(lab, host), pins(lab, host)
    proc = deploy(lab, project, "--limit", host)
    assert proc.returncode != 0
    rep = latest_report(project)["hosts"][host]
    assert rep["gates"]["build"]["result"] == "failed"
    assert f"refused by {host}" in rep["reason"] and "not signed by a key the host trusts" in (
        rep["reason"])
    assert "switch-test" not in rep["gates"] and "known-good" not in rep["gates"]
    assert running(lab, host) == good and pins(lab, host) == old_pins
    summary = proc.stderr[proc.stderr.rfind("did not pass"):]  # the run's summary
    assert f"{host} " in summary and "refused by" in summary


def test_5_an_unsigned_closure_in_the_cache_is_refused(lab: LabState, project: Path) -> None:
    """Someone pushed a closure to the cache without signing it: the host refuses it."""
    commit_change(project, 'pname = "direnv"; version = "2.34.0"',
                  'pname = "direnv"; version = "2.35.0"', "feat(dev): direnv 2.35.0")
    _, blob = source_archive(project / "fleet")
    url = json.loads(json.dumps(
        __import__("yaml").safe_load((Path(lab.dir) / "cache.yaml").read_text())))["url"]
    proc = subprocess.run(
        ["ssh", *lab.ssh_args("builder-1"),
         "rm -rf /tmp/unsigned && mkdir -p /tmp/unsigned && tar -x -C /tmp/unsigned && "
         f"out=$(nix-build /tmp/unsigned -A hosts.wsl-dev-1 --no-out-link) && "
         f"nix copy --to {url} $out && nix path-info --sigs $out"],
        input=blob, capture_output=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert "nixify-lab-cache-1:" not in proc.stdout.decode()  # pushed without a signature
    _refused(lab, project, "wsl-dev-1")


def test_6_a_closure_signed_with_another_key_is_refused(lab: LabState, project: Path) -> None:
    secrets = Path(lab.dir) / "secrets"
    path = secrets / DEFAULT_SECRET
    saved = path.read_bytes()
    commit_change(project, 'pname = "neovim"; version = "0.10.0"',
                  'pname = "neovim"; version = "0.10.1"', "feat(dev): neovim 0.10.1")
    try:
        write_key_secret(path, generate_signing_key("intruder-cache-1"),
                         recipients_for(secrets, DEFAULT_SECRET))
        _refused(lab, project, "laptop-1")
        narinfos = (Path(lab.host("nas-1").root) / "var-lib-nixify" / "cache").glob("*.narinfo")
        assert any("Sig: intruder-cache-1:" in p.read_text() for p in narinfos)
    finally:
        path.write_bytes(saved)


def test_7_without_the_operator_s_identity_builders_sign_with_their_mounted_key(
    lab: LabState, project: Path
) -> None:
    """The operator (or CI) cannot decrypt the key: each builder signs with the copy
    the secrets step installed under its /run/secrets, with its own host key."""
    identity = Path(lab.dir) / "operator_age.txt"
    aside = identity.with_name("operator_age.txt.aside")
    commit_change(project, 'pname = "restic"; version = "0.16.4"',
                  'pname = "restic"; version = "0.16.5"', "feat(nas): restic 0.16.5")
    identity.rename(aside)
    try:
        proc = deploy(lab, project, "--limit", "nas-1")
    finally:
        aside.rename(identity)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "the operator cannot decrypt the signing key" in proc.stderr
    assert ("signed with the key mounted at /run/secrets/builders/cache-signing-key.yaml"
            in proc.stderr)
    assert "restic-0.16.5" in ssh(lab, "nas-1", "cat /run/current-system/packages").stdout
    assert latest_report(project)["hosts"]["nas-1"]["status"] == "deployed"


def test_8_the_cache_key_is_never_in_plaintext(lab: LabState, project: Path) -> None:
    ids = [i.identity for i in identities_from_file(Path(lab.dir) / "operator_age.txt")]
    key = load_signing_key(Path(lab.dir) / "secrets" / DEFAULT_SECRET, ids)
    secret = key.secret_bytes.decode().split(":", 1)[1]
    assert OUTPUTS and not any(secret in out for out in OUTPUTS)
    roots = [project, Path(lab.dir), REPO / "reports"]
    hits = subprocess.run(["rg", "-l", "-F", "--hidden", "--no-ignore", "-a", secret,
                           *[str(r) for r in roots if r.exists()]],
                          capture_output=True, text=True)
    # the one place it may be: a builder's /run/secrets (tmpfs on a real host), where
    # the secrets install decrypted it with the builder's own host key, 0400 root
    for hit in hits.stdout.split():
        rel = Path(hit).relative_to(Path(lab.dir) / "hosts")
        assert rel.parts[0] in BUILDERS and rel.parts[1:3] == ("run", "secrets.d"), hit
        assert rel.parts[-2:] == tuple(DEFAULT_SECRET.split("/")), hit
        assert oct(Path(hit).stat().st_mode & 0o777) == "0o400", hit
    history = subprocess.run(["git", "-C", str(project), "log", "-p", "--all"],
                             capture_output=True, text=True).stdout
    assert secret not in history
