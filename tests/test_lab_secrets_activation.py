"""Secrets with activation on lab hosts, as sops-nix does it: the system's own
``switch-to-configuration`` decrypts what the operator uploaded for it (by
closure) with the host's key and the sops of its own closure."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from labkit import ssh

from nixify.lab import LabState, control
from nixify.secrets.install import SecretFileSpec, by_closure_dir, manifest_json
from nixify.secrets.keys import identities_from_file
from nixify.secrets.sopsfile import SopsFile

pytestmark = pytest.mark.lab


def _upload(state: LabState, host: str, closure: str, files: dict[str, Path],
            specs: list[SecretFileSpec]) -> None:
    """The operator's side of the contract, by hand: the encrypted files and the
    manifest under by-closure/<system>, made as .<name>.tmp and renamed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel, path in files.items():
            tar.add(str(path), arcname=f"files/{rel}")
        data = manifest_json(host, specs).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    final = by_closure_dir(closure)
    tmp = str(Path(final).parent / f".{Path(final).name}.tmp")
    script = (f"set -e; rm -rf {final} {tmp}; mkdir -p {tmp}; tar -C {tmp} -xf -; "
              f"mv {tmp} {final}")
    proc = subprocess.run(["ssh", *state.ssh_args(host), script], input=buf.getvalue(),
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_activation_sets_up_secrets_before_units_and_dry_activate_names_a_bad_file(
    make_lab: Callable[[str, int, str], LabState],
) -> None:
    state = make_lab("secrets-activation", 5, "127.0.6")  # ..., builder-1, nas-1
    labdir = Path(state.dir)
    control.provision_lab(labdir)
    secrets = labdir / "secrets"
    ops = [i.identity for i in identities_from_file(labdir / "operator_age.txt")]
    nas = state.host("nas-1")
    system = ssh(state, nas.name, "readlink /run/current-system").stdout.strip()
    assert system == nas.initial_system
    # the decrypter is in the system's closure: a fixed-output sops, not the operator's
    sops = ssh(state, nas.name, f"readlink -f {system}/sw/bin/sops; "
               f"nix-store -qR {system} | grep -c -- '-sops-3.11.0$'").stdout.split()
    assert re.fullmatch(r"/nix/store/[a-z0-9]{32}-sops-3\.11\.0/bin/sops", sops[0]), sops
    assert sops[1] == "1"

    ntp = secrets / "common" / "ntp.yaml"
    plain = SopsFile.load(ntp).plaintext(ops)
    digest = hashlib.sha256(plain.encode()).hexdigest()
    specs = [SecretFileSpec("common/ntp.yaml"), SecretFileSpec("nas/restic.yaml", mode="0440")]
    _upload(state, nas.name, system, {"common/ntp.yaml": ntp,
                                      "nas/restic.yaml": secrets / "nas" / "restic.yaml"}, specs)
    switch = f"{system}/bin/switch-to-configuration"
    dry = ssh(state, nas.name, f"{switch} dry-activate", check=False)
    assert dry.returncode == 0, dry.stderr
    assert "secrets: 2 file(s) decrypt with this host's key" in dry.stdout
    assert ssh(state, nas.name, "test -e /run/secrets", check=False).returncode == 1

    for n, action in enumerate(("test", "switch")):
        act = ssh(state, nas.name, f"{switch} {action}", check=False)
        assert act.returncode == 0, act.stderr
        assert plain not in act.stdout + act.stderr
        out = ssh(state, nas.name, "readlink /run/secrets; ls /run/secrets.d; "
                  "stat -c '%a %U %G' /run/secrets/common/ntp.yaml /run/secrets/nas/restic.yaml; "
                  "cat /run/nixify-lab/units/chronyd.service.secret").stdout.splitlines()
        assert out[0] == f"/run/secrets.d/{n}"
        assert out[-3:-1] == ["400 root root", "440 root root"]
        # the unit started after the switch: it read the new generation's content
        assert out[-1] == f"sha256:{digest} /run/secrets.d/{n}/common/ntp.yaml"
        assert ssh(state, nas.name, "cat /run/secrets/common/ntp.yaml").stdout == plain

    # a file encrypted to another host's key: dry-activate names it, nothing switched
    foreign = secrets / "builders" / "cache-signing-key.yaml"  # builders only
    _upload(state, nas.name, system, {"common/ntp.yaml": foreign}, [SecretFileSpec(
        "common/ntp.yaml")])
    before = ssh(state, nas.name, "readlink /run/secrets; ls /run/secrets.d").stdout
    dry = ssh(state, nas.name, f"{switch} dry-activate", check=False)
    assert dry.returncode != 0
    assert "secrets: cannot decrypt common/ntp.yaml with this host's key" in dry.stderr
    act = ssh(state, nas.name, f"{switch} test", check=False)
    assert act.returncode == 1 and "not switched" in act.stderr
    assert ssh(state, nas.name, "readlink /run/secrets; ls /run/secrets.d").stdout == before
    unit = ssh(state, nas.name, "cat /run/nixify-lab/units/chronyd.service.secret").stdout
    assert unit.strip() == f"sha256:{digest} /run/secrets.d/1/common/ntp.yaml"

    # back to the good upload; a reboot sets the secrets up again from the boot entry
    _upload(state, nas.name, system, {"common/ntp.yaml": ntp}, [SecretFileSpec(
        "common/ntp.yaml")])
    booted, rc, output = control.reboot_host(labdir, nas.name)
    assert (booted, rc) == (system, 0), output
    assert plain not in output
    out = ssh(state, nas.name, "readlink /run/booted-system /run/secrets; "
              "cat /run/nixify-lab/units/chronyd.service.secret; "
              "cat /run/secrets/common/ntp.yaml").stdout
    lines = out.splitlines()
    assert lines[:2] == [system, "/run/secrets.d/0"]  # /run was cleared by the reboot
    assert lines[2] == f"sha256:{digest} /run/secrets.d/0/common/ntp.yaml"
    assert out.endswith(plain)
    # a system without an upload mounts no secrets: skipped, exit 0
    builder = state.host("builder-1")
    bsys = ssh(state, builder.name, "readlink /run/current-system").stdout.strip()
    skipped = ssh(state, builder.name, f"{bsys}/bin/switch-to-configuration dry-activate")
    assert "secrets:" not in skipped.stdout + skipped.stderr
