"""Builds on the builder pool; closures signed into the cache, fetched by targets.

One ``nix-build`` per (evaluating builder, Nix arguments): that builder
evaluates every system assigned to it. For the largest batch, Nix's own
distributed builds spread the derivations over the pool: the evaluating builder
builds with its own ``max-jobs``, every other reachable builder is a remote
builder (``ssh-ng://``, its systems and ``max-jobs`` as it reported them, a
speed factor by role). The other batches (a builder's own system, evaluated by
another builder) run at the same time on their evaluator alone, so that no two
evaluators wait on each other's locks. Which builder built which derivation is
read from Nix's own "building ... on ..." lines.

With a cache configured, each evaluating builder signs what it built with the
fleet's key (decrypted in memory by the operator, given to ``nix store sign`` on
stdin: never on a disk, never in a log) and pushes it; each target then
realises its closure from its own substituters: a closure without a signature
the host trusts is refused by the host (``require-sigs``), and the outcome says
so. Without a cache, each builder copies each closure straight to its target.

Nothing here imports pyinfra: hosts are given as ``name -> data`` mappings
(pyinfra host data or plain dicts).
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
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nixify.cache.config import CacheConfig
from nixify.cache.keys import SigningKey
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
_BUILDING = re.compile(r"^building '(/nix/store/[^']+\.drv)'(?: on '([^']+)')?")
_FETCHED = re.compile(r"^copying path '(/nix/store/[^']+)' from '([^']+)'")
_UNSIGNED = re.compile(r"is not signed by any of the keys|lacks a valid signature")
SECRETS_MOUNT = "/run/secrets"  # where a host's secrets are installed (sops-nix's place)
# Preferred builders are faster: Nix weighs free slots by speed factor.
SPEED_FACTOR = {"remote_builder": 2, "cloud_builder": 1}

Say = Callable[[str, str], None]


@dataclass
class BuildOutcome:
    """One host's build: where, what, or why not."""

    host: str
    builder: str | None = None
    closure: str | None = None
    drv: str | None = None
    built: list[str] = field(default_factory=list)  # derivations its batch realised
    placement: dict[str, str] = field(default_factory=dict)  # drv -> builder that built it
    seconds: float = 0.0
    copy_seconds: float = 0.0
    pushed: bool = False  # signed and in the cache
    fetched: int = 0  # store paths the target substituted from the cache
    error: str | None = None
    skipped: bool = False


def host_data_model(data: Any, name: str) -> HostData:
    fields = {k: data.get(k) for k in HostData.model_fields if data.get(k) is not None}
    fields["name"] = name
    return HostData.model_validate(fields)


_CONTROL_DIR = tempfile.mkdtemp(prefix="nixify-ssh-")
_MASTERS: dict[str, list[str]] = {}


def _multiplexed(args: Sequence[str]) -> list[str]:
    """Reuse one SSH connection per host for the run (closed by ``close_masters``)."""
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
    Path(_CONTROL_DIR).mkdir(mode=0o700, exist_ok=True)
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


def _store_uri(scheme: str, name: str, data: Any) -> str:
    user = data.get("ssh_user") or "root"
    return f"{scheme}://{user}@{data.get('ssh_hostname') or name}"


def _ssh_port_opts(data: Any) -> str:
    port = int(data.get("ssh_port") or 22)
    return f"NIX_SSHOPTS={shlex.quote(f'-p {port}')} " if port != 22 else ""


@dataclass(frozen=True)
class PoolMember:
    """A builder as a Nix remote builder of another one."""

    name: str
    uri: str
    systems: tuple[str, ...]
    max_jobs: int
    speed_factor: int

    def machine_line(self) -> str:
        """One ``builders`` entry: URI, systems, key (default), jobs, speed factor."""
        return f"{self.uri} {','.join(self.systems)} - {self.max_jobs} {self.speed_factor}"


def pool_members(
    probes: Mapping[str, BuilderProbe], data: Mapping[str, Any], besides: str
) -> list[PoolMember]:
    """Every reachable builder but ``besides``, as a remote builder of ``besides``."""
    out = []
    for name in sorted(probes):
        p = probes[name]
        if name == besides or not p.reachable or p.max_jobs <= 0:
            continue
        role = str(data[name].get("role") or "")
        out.append(
            PoolMember(
                name,
                _store_uri("ssh-ng", name, data[name]),
                tuple(sorted(p.systems)),
                p.max_jobs,
                SPEED_FACTOR.get(role, 1),
            )
        )
    return out


def parse_placement(stderr: str, local: str, members: Sequence[PoolMember]) -> dict[str, str]:
    """drv -> the builder that built it, from Nix's "building '...' [on '...']" lines."""
    by_uri = {m.uri: m.name for m in members}
    placement: dict[str, str] = {}
    for line in stderr.splitlines():
        m = _BUILDING.match(line)
        if m:
            placement[m.group(1)] = by_uri.get(m.group(2), m.group(2)) if m.group(2) else local
    return placement


class BuildPool:
    """Builds once for all selected hosts; then pushes to the cache or copies."""

    def __init__(
        self,
        fleet_dir: Path,
        say: Say,
        cache: CacheConfig | None = None,
        signing_key: Callable[[], SigningKey] | None = None,
    ) -> None:
        self.fleet_dir = fleet_dir
        self.say = say
        self.cache = cache
        self._signing_key = signing_key
        self.outcomes: dict[str, BuildOutcome] = {}
        self.probes: dict[str, BuilderProbe] = {}
        self.derivations: dict[str, DerivationSet] = {}
        self.previous_drvs: dict[str, str] = {}
        self.placement: dict[str, str] = {}  # every drv built in this run -> builder

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

    def build_all(
        self,
        targets: Mapping[str, Any],
        builder_data: Mapping[str, Any],
        deliver: bool = True,
    ) -> dict[str, BuildOutcome]:
        """Build every host of ``targets`` (name -> data); with ``deliver``, put each
        closure into its target's store (from the cache, or copied by the builder)."""
        models = {n: host_data_model(d, n) for n, d in targets.items()}
        names = sorted(builder_data)
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            probes = dict(
                zip(names, pool.map(lambda b: self._probe(b, builder_data[b]), names), strict=True)
            )
        self.probes = probes
        for p in probes.values():
            if not p.reachable:
                self.say(p.name, f"builder unreachable, left out of the pool: {p.error}")
        assignment = assign_builders(list(models.values()), probes)
        batches: dict[tuple[str, tuple[tuple[str, str], ...]], list[HostData]] = {}
        for name, a in assignment.items():
            if a.builder is None:
                self.outcomes[name] = BuildOutcome(name, error=a.reason, skipped=True)
                continue
            key = (a.builder, tuple(sorted(models[name].nix_args.items())))
            batches.setdefault(key, []).append(models[name])
        digest, blob = source_archive(self.fleet_dir)

        order = sorted(batches.items(), key=lambda kv: (-len(kv[1]), kv[0]))

        def run_batch(
            item: tuple[tuple[str, tuple[tuple[str, str], ...]], list[HostData]],
        ) -> None:
            (builder, args), hosts = item
            members: list[PoolMember] = []
            if item is order[0]:
                # A builder never builds its own next system, not even for the pool.
                own = {h.name for h in hosts}
                members = [
                    m for m in pool_members(probes, builder_data, builder) if m.name not in own
                ]
            self._build_batch(builder, builder_data, dict(args), hosts, digest, blob, members)

        # The largest batch's evaluator hands builds to the whole pool; the other
        # batches (a builder's own system, built by another builder) run beside it
        # on their evaluator alone: two evaluators handing builds to each other at
        # once could each hold a lock the other's build waits for.
        with ThreadPoolExecutor(max_workers=max(1, len(order))) as pool:
            list(pool.map(run_batch, order))
        built = [o for o in self.outcomes.values() if o.closure and not o.error]
        if self.cache is not None and built:
            self._push(built, builder_data)
        if deliver:
            ready = [o for o in self.outcomes.values() if o.closure and not o.error]
            with ThreadPoolExecutor(max_workers=max(1, min(32, len(ready)))) as pool:
                list(
                    pool.map(
                        lambda o: (
                            self._fetch(o, targets[o.host])
                            if self.cache is not None
                            else self._copy(o, builder_data[o.builder or ""], targets[o.host])
                        ),
                        ready,
                    )
                )
        return self.outcomes

    def _build_batch(
        self,
        builder: str,
        builder_data: Mapping[str, Any],
        nix_args: Mapping[str, str],
        hosts: list[HostData],
        digest: str,
        blob: bytes,
        members: Sequence[PoolMember] = (),
        old_drvs: Sequence[str] = (),
    ) -> None:
        """One round trip: receive the sources, build every host's system (spread over
        the pool), root the results, and print each output's deriver and the
        derivations the diff gate's root-cause analysis needs."""
        args = ssh_args_from_data(builder, builder_data[builder])
        src = f"{SRC_DIR}/{digest}"
        argv = ["nix-build", src, "-o", f"{BUILD_ROOTS}/{digest[:12]}-{builder}"]
        for k, v in sorted(nix_args.items()):
            argv += ["--argstr", k, v]
        if members:
            argv += ["--builders", "; ".join(m.machine_line() for m in members)]
        if self.cache is not None:
            argv += ["--option", "builders-use-substitutes", "true"]
        for h in hosts:
            argv += ["-A", h.system_attr]
        old = " ".join(shlex.quote(d) for d in old_drvs)
        sshopts = _ssh_port_opts(builder_data[members[0].name]) if members else ""
        script = "\n".join(
            [
                "set -e",
                f"if [ -d {src} ]; then cat >/dev/null; else mkdir -p {src}.tmp.$$ && "
                f"tar -x -C {src}.tmp.$$ && mv {src}.tmp.$$ {src}; fi",
                f"mkdir -p {BUILD_ROOTS}",
                "outs=$(" + sshopts + " ".join(shlex.quote(a) for a in argv) + ")",
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
        placement = parse_placement(stderr, builder, members)
        self.placement.update(placement)
        if proc.returncode != 0:
            for h in hosts:
                self.outcomes[h.name] = BuildOutcome(
                    h.name,
                    builder,
                    placement=placement,
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
        built = list(placement)
        for h, out, drv in zip(hosts, outs, drvs, strict=False):
            self.outcomes[h.name] = BuildOutcome(
                h.name,
                builder,
                closure=out,
                drv=drv,
                built=built,
                placement=placement,
                seconds=seconds,
            )
        per: dict[str, int] = {}
        for b in placement.values():
            per[b] = per.get(b, 0) + 1
        where = ", ".join(f"{n} on {b}" for b, n in sorted(per.items())) or "nothing to build"
        self.say(
            builder,
            f"evaluated {len(hosts)} system(s); {len(placement)} derivation(s) built "
            f"({where}) in {seconds:.2f}s",
        )

    def _push(self, outcomes: Sequence[BuildOutcome], builder_data: Mapping[str, Any]) -> None:
        """Each evaluating builder signs its hosts' closures with the fleet's key and
        pushes them to the cache; a failure fails exactly those hosts, visibly.

        The key comes from the operator (decrypted in memory, sent on stdin) or, when
        the operator cannot decrypt it, from the builder's own mounted secret
        (``/run/secrets/<signing_key>``, installed by the secrets step with the
        builder's host key). Either way it reaches ``nix store sign`` on stdin."""
        assert self.cache is not None
        key: SigningKey | None = None
        mounted = f"{SECRETS_MOUNT}/{self.cache.signing_key}"
        try:
            if self._signing_key is None:
                raise ConfigError("no cache signing key configured")
            key = self._signing_key()
        except ConfigError as exc:
            self.say(
                "cache",
                f"the operator cannot decrypt the signing key ({exc}); each builder signs "
                f"with its mounted {mounted}",
            )
        by_builder: dict[str, list[BuildOutcome]] = {}
        for o in outcomes:
            by_builder.setdefault(o.builder or "", []).append(o)

        def push(builder: str, group: list[BuildOutcome]) -> None:
            assert self.cache is not None
            paths = " ".join(shlex.quote(o.closure or "") for o in group)
            sign = f"nix store sign --key-file /dev/stdin -r {paths}"
            if key is None:
                m = shlex.quote(mounted)
                sign = (
                    f"if [ ! -r {m} ]; then echo 'error: no cache signing key mounted at '{m} "
                    f">&2; exit 1; fi; sed -n 's/^secret_key: *//p' {m} | {sign}"
                )
            script = f"{sign} && nix copy --to {shlex.quote(self.cache.push)} {paths}"
            started = time.monotonic()
            proc = ssh(
                ssh_args_from_data(builder, builder_data[builder]),
                script,
                stdin=key.secret_bytes if key is not None else b"",
            )
            took = time.monotonic() - started
            if proc.returncode != 0:
                why = nix_error(proc.stderr.decode(errors="replace"))
                for o in group:
                    o.error = (
                        f"cache: {builder} could not sign and push to {self.cache.push}: {why}"
                    )
                self.say(builder, f"push to the cache failed: {why}")
                return
            for o in group:
                o.pushed = True
            self.say(
                builder,
                f"signed with {key.name if key else 'the key mounted at ' + mounted} and pushed "
                f"{len(group)} closure(s) to {self.cache.push} in {took:.2f}s",
            )

        with ThreadPoolExecutor(max_workers=max(1, len(by_builder))) as pool:
            list(pool.map(lambda kv: push(*kv), by_builder.items()))

    def _fetch(self, outcome: BuildOutcome, tdata: Any) -> None:
        """The target realises its closure from its own substituters (the cache);
        with ``require-sigs`` it refuses a closure its trusted keys did not sign."""
        assert outcome.closure and self.cache is not None
        script = f"nix-store --realise {shlex.quote(outcome.closure)} >/dev/null"
        started = time.monotonic()
        proc = ssh(ssh_args_from_data(outcome.host, tdata), script)
        outcome.copy_seconds = time.monotonic() - started
        stderr = proc.stderr.decode(errors="replace")
        outcome.fetched = sum(1 for ln in stderr.splitlines() if _FETCHED.match(ln))
        if proc.returncode == 0:
            self.say(
                outcome.host,
                f"fetched {outcome.fetched} path(s) of its closure from {self.cache.url} "
                f"in {outcome.copy_seconds:.2f}s",
            )
            return
        if _UNSIGNED.search(stderr):
            unsigned = [ln for ln in stderr.splitlines() if _UNSIGNED.search(ln)]
            outcome.error = (
                f"refused by {outcome.host}: {outcome.closure} from {self.cache.url} is not "
                f"signed by a key the host trusts (require-sigs): {unsigned[0].strip()[:300]}"
            )
        else:
            outcome.error = (
                f"{outcome.host} could not fetch {outcome.closure} from {self.cache.url}: "
                f"{nix_error(stderr)}"
            )

    def _copy(self, outcome: BuildOutcome, bdata: Any, tdata: Any) -> None:
        """No cache: the builder pushes the closure straight to the target."""
        assert outcome.builder and outcome.closure
        script = (
            f"{_ssh_port_opts(tdata)}nix copy --to "
            f"{shlex.quote(_store_uri('ssh', outcome.host, tdata))} "
            f"{shlex.quote(outcome.closure)}"
        )
        started = time.monotonic()
        proc = ssh(ssh_args_from_data(outcome.builder, bdata), script)
        outcome.copy_seconds = time.monotonic() - started
        if proc.returncode != 0:
            err = " | ".join(proc.stderr.decode(errors="replace").strip().splitlines()[-3:])
            outcome.error = f"copy from {outcome.builder} to {outcome.host} failed: {err}"
