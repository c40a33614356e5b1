"""Gate 1's builds: every selected host's system evaluated and built on a builder.

Builds are coalesced: the first host to reach gate 1 builds for every selected
host, one ``nix-build`` per builder (one evaluation, Nix schedules the rest),
then each builder copies each closure straight to its target. The operator
reaches the builders over OpenSSH whatever ``--limit`` says; builders are not
deployed unless selected. A host with no usable builder is skipped, with the
reason; nothing is ever built on a constrained host or on the operator.
"""

from __future__ import annotations

import hashlib
import io
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixify.diff.derivations import DerivationSet, parse_derivations
from nixify.errors import ConfigError
from nixify.inventory import HostData, ssh_args_from_data
from nixify.pipeline.builders import (
    PROBE_COMMAND,
    BuilderProbe,
    assign_builders,
    parse_builder_probe,
)

SRC_DIR = "/var/lib/nixify/src"
BUILD_ROOTS = "/var/lib/nixify/builds"
_SEP = "--nixify-section--"
_BUILDING = re.compile(r"^building '(/nix/store/[^']+\.drv)'")


@dataclass
class BuildOutcome:
    """One host's build: where, what, or why not."""

    host: str
    builder: str | None = None
    closure: str | None = None
    drv: str | None = None
    built: list[str] = field(default_factory=list)  # derivations the builder realised
    seconds: float = 0.0
    copy_seconds: float = 0.0
    error: str | None = None
    skipped: bool = False


def host_data_model(data: Any, name: str) -> HostData:
    fields = {k: data.get(k) for k in HostData.model_fields if data.get(k) is not None}
    fields["name"] = name
    return HostData.model_validate(fields)


_CONTROL_DIR = tempfile.mkdtemp(prefix="nixify-ssh-")
_MASTERS: dict[str, list[str]] = {}


def _multiplexed(args: Sequence[str]) -> list[str]:
    """Reuse one SSH connection per builder for the run (closed by ``close_masters``)."""
    opts = [
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={_CONTROL_DIR}/%C",
        "-o",
        "ControlPersist=120",
    ]
    _MASTERS[" ".join(args)] = list(args)
    return [*opts, *args]


def close_masters() -> None:
    for args in _MASTERS.values():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={_CONTROL_DIR}/%C", "-O", "exit", *args],
            capture_output=True,
            timeout=10,
        )
    _MASTERS.clear()
    shutil.rmtree(_CONTROL_DIR, ignore_errors=True)


def ssh(
    args: Sequence[str], script: str, stdin: bytes | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ssh", *_multiplexed(args), script], input=stdin, capture_output=True, timeout=timeout
    )


def source_archive(fleet_dir: Path) -> tuple[str, bytes]:
    """A deterministic tar of the fleet's Nix sources, and its content hash."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in fleet_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(fleet_dir).as_posix()
            info = tarfile.TarInfo(rel)
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    return hashlib.sha256(blob).hexdigest()[:32], blob


def nix_error(stderr: str, limit: int = 400) -> str:
    """The lines of Nix's stderr that say what went wrong, shortened."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")] or lines[-2:]
    text = " | ".join(errors[:2])
    return text if len(text) <= limit else text[: limit - 3] + "..."


class BuildCoordinator:
    """Builds once for all selected hosts; each host then asks for its outcome."""

    def __init__(self, fleet_dir: Path, say: Any) -> None:
        self.fleet_dir = fleet_dir
        self.say = say
        self._lock = threading.Lock()
        self._done = False
        self.outcomes: dict[str, BuildOutcome] = {}
        self.probes: dict[str, BuilderProbe] = {}
        self.derivations: dict[str, DerivationSet] = {}
        self.previous_drvs: dict[str, str] = {}

    def outcome(self, state: Any, host: Any) -> BuildOutcome:
        with self._lock:
            if not self._done:
                try:
                    self._build_all(state)
                finally:
                    self._done = True
        return self.outcomes.get(host.name) or BuildOutcome(
            host.name, error="was not selected when the builds ran"
        )

    def _probe(self, name: str, data: Any) -> BuilderProbe:
        try:
            proc = ssh(ssh_args_from_data(name, data), PROBE_COMMAND, timeout=30)
        except subprocess.TimeoutExpired:
            return BuilderProbe(name, False, error="timed out")
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            return BuilderProbe(
                name, False, error=err[-1] if err else f"ssh exit {proc.returncode}"
            )
        return parse_builder_probe(name, proc.stdout.decode())

    def _build_all(self, state: Any) -> None:
        targets = {h.name: h for h in state.inventory.get_active_hosts()}
        models = {n: host_data_model(h.data, n) for n, h in targets.items()}
        builder_names = sorted({b for m in models.values() for b in m.builders})
        builder_data = {b: state.inventory.get_host(b).data for b in builder_names}
        with ThreadPoolExecutor(max_workers=max(1, len(builder_names))) as pool:
            probes = dict(
                zip(
                    builder_names,
                    pool.map(lambda b: self._probe(b, builder_data[b]), builder_names),
                    strict=True,
                )
            )
        self.probes = probes
        for p in probes.values():
            if not p.reachable:
                self.say(p.name, f"builder unreachable: {p.error}")
        assignment = assign_builders(list(models.values()), probes)
        batches: dict[tuple[str, tuple[tuple[str, str], ...]], list[HostData]] = {}
        for name, a in assignment.items():
            if a.builder is None:
                self.outcomes[name] = BuildOutcome(name, error=a.reason, skipped=True)
                continue
            key = (a.builder, tuple(sorted(models[name].nix_args.items())))
            batches.setdefault(key, []).append(models[name])
        digest, blob = source_archive(self.fleet_dir)
        with ThreadPoolExecutor(max_workers=max(1, len(batches))) as pool:
            list(
                pool.map(
                    lambda item: self._build_batch(
                        item[0][0],
                        builder_data[item[0][0]],
                        dict(item[0][1]),
                        item[1],
                        digest,
                        blob,
                    ),
                    batches.items(),
                )
            )
        copies = [o for o in self.outcomes.values() if o.closure and not o.error]
        with ThreadPoolExecutor(max_workers=max(1, min(32, len(copies)))) as pool:
            list(
                pool.map(
                    lambda o: self._copy(o, builder_data[o.builder or ""], targets[o.host].data),
                    copies,
                )
            )

    def _build_batch(
        self,
        builder: str,
        bdata: Any,
        nix_args: Mapping[str, str],
        hosts: list[HostData],
        digest: str,
        blob: bytes,
        old_drvs: Sequence[str] = (),
    ) -> None:
        """One round trip: receive the sources, build every host's system, root the
        results, and print each output's deriver and the derivations the diff
        gate's root-cause analysis needs (new and previous systems)."""
        args = ssh_args_from_data(builder, bdata)
        src = f"{SRC_DIR}/{digest}"
        argv = ["nix-build", src, "-o", f"{BUILD_ROOTS}/{digest[:12]}-{builder}"]
        for k, v in sorted(nix_args.items()):
            argv += ["--argstr", k, v]
        for h in hosts:
            argv += ["-A", h.system_attr]
        old = " ".join(shlex.quote(d) for d in old_drvs)
        script = "\n".join(
            [
                "set -e",
                f"if [ -d {src} ]; then cat >/dev/null; else mkdir -p {src}.tmp.$$ && "
                f"tar -x -C {src}.tmp.$$ && mv {src}.tmp.$$ {src}; fi",
                f"mkdir -p {BUILD_ROOTS}",
                "outs=$(" + " ".join(shlex.quote(a) for a in argv) + ")",
                'echo "$outs"',
                f"echo {_SEP}",
                "drvs=$(nix-store -q --deriver $outs)",
                'echo "$drvs"',
                f"echo {_SEP}",
                f'have=$(for d in $drvs {old}; do [ -e "$d" ] && echo "$d"; done; true)',
                '[ -z "$have" ] || nix show-derivation -r $have',
            ]
        )
        started = time.monotonic()
        proc = ssh(args, script, stdin=blob)
        seconds = time.monotonic() - started
        stderr = proc.stderr.decode(errors="replace")
        if proc.returncode != 0:
            for h in hosts:
                self.outcomes[h.name] = BuildOutcome(
                    h.name,
                    builder,
                    seconds=seconds,
                    error=f"build on {builder} failed: {nix_error(stderr)}",
                )
            return
        outs_text, _, rest = proc.stdout.decode().partition(_SEP + "\n")
        drvs_text, _, show = rest.partition(_SEP + "\n")
        outs, drvs = outs_text.split(), drvs_text.split()
        try:
            self.derivations[builder] = parse_derivations(show or "{}", builder)
        except ConfigError as exc:
            self.say(builder, f"derivations unavailable for the diff gate: {exc}")
        built = [m.group(1) for line in stderr.splitlines() if (m := _BUILDING.match(line))]
        for h, out, drv in zip(hosts, outs, drvs, strict=False):
            self.outcomes[h.name] = BuildOutcome(
                h.name, builder, closure=out, drv=drv, built=built, seconds=seconds
            )
        self.say(
            builder,
            f"built {len(hosts)} system(s), {len(built)} derivation(s) realised in {seconds:.2f}s",
        )

    def _copy(self, outcome: BuildOutcome, bdata: Any, tdata: Any) -> None:
        """The builder pushes the closure straight to the target."""
        assert outcome.builder and outcome.closure
        port = int(tdata.get("ssh_port") or 22)
        user = tdata.get("ssh_user") or "root"
        address = tdata.get("ssh_hostname") or outcome.host
        script = (
            f"NIX_SSHOPTS={shlex.quote(f'-p {port}')} nix copy --to "
            f"{shlex.quote(f'ssh://{user}@{address}')} {shlex.quote(outcome.closure)}"
        )
        started = time.monotonic()
        proc = ssh(ssh_args_from_data(outcome.builder, bdata), script)
        outcome.copy_seconds = time.monotonic() - started
        if proc.returncode != 0:
            err = " | ".join(proc.stderr.decode(errors="replace").strip().splitlines()[-3:])
            outcome.error = f"copy from {outcome.builder} to {outcome.host} failed: {err}"
