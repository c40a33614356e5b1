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
import subprocess
import tarfile
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
from nixify.transport import (
    Completed,
    HostUnreachable,
    SshTransport,
    close_all,
    copy_closure,
    nix_sshopts,
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


BUILD_TIMEOUT = 1800  # seconds for one round trip to a builder or a target

# The transport owns the SSH connections; the pool's old names stay importable.
close_masters = close_all


def host_transport(name: str, data: Any) -> SshTransport:
    """The host ``name`` over OpenSSH, from its inventory data."""
    return SshTransport(name, ssh_args_from_data(name, data))


def run_on(
    name: str, data: Any, script: str, stdin: bytes | None = None, timeout: float = BUILD_TIMEOUT
) -> Completed:
    """``script`` on host ``name``; a host that did not answer comes back as a failed
    command whose stderr says so (``error: NAME did not answer: ...``)."""
    try:
        return host_transport(name, data).run(script, stdin=stdin, timeout=timeout)
    except HostUnreachable as exc:
        return Completed(name, script, exc.rc, "", f"error: {name} did not answer: {exc.reason}")


def ssh(
    args: Sequence[str], script: str, stdin: bytes | None = None, timeout: float = BUILD_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """Deprecated: ``run_on``/``host_transport``. ``script`` over ``args`` (ssh's
    arguments, destination last), as a completed process (255: no answer)."""
    name = args[-1] if args else "?"
    try:
        res = SshTransport(name, args).run(script, stdin=stdin, timeout=timeout)
    except HostUnreachable as exc:
        return subprocess.CompletedProcess(list(args), exc.rc, b"", exc.reason.encode())
    return subprocess.CompletedProcess(list(args), res.rc, res.stdout.encode(),
                                       res.stderr.encode())


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


def _port_options(data: Any) -> list[str]:
    """ssh options for a host's port, for ``NIX_SSHOPTS`` (none for port 22)."""
    port = int(data.get("ssh_port") or 22)
    return ["-p", str(port)] if port != 22 else []


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
            res = host_transport(name, data).run(PROBE_COMMAND, timeout=30)
        except HostUnreachable as exc:
            return BuilderProbe(name, False, error=exc.reason)
        if not res.ok:
            err = res.stderr.strip().splitlines()
            return BuilderProbe(name, False, error=err[-1] if err else f"exit {res.rc}")
        return parse_builder_probe(name, res.stdout)

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
            old = [self.previous_drvs[h.name] for h in hosts if h.name in self.previous_drvs]
            self._build_batch(
                builder, builder_data, dict(args), hosts, digest, blob, members, old
            )

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
        sshopts = nix_sshopts(_port_options(builder_data[members[0].name])) if members else ""
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
        res = run_on(builder, builder_data[builder], script, stdin=blob)
        seconds = time.monotonic() - started
        stderr = res.stderr
        placement = parse_placement(stderr, builder, members)
        self.placement.update(placement)
        if not res.ok:
            for h in hosts:
                self.outcomes[h.name] = BuildOutcome(
                    h.name,
                    builder,
                    placement=placement,
                    seconds=seconds,
                    error=f"build on {builder} failed: {nix_error(stderr)}",
                )
            return
        outs_text, _, rest = res.stdout.partition(_SEP + "\n")
        drvs_text, _, show = rest.partition(_SEP + "\n")
        outs, drvs = outs_text.split(), drvs_text.split()
        if not (len(outs) == len(drvs) == len(hosts)):  # never drop a host silently
            for h in hosts:
                self.outcomes[h.name] = BuildOutcome(
                    h.name, builder, placement=placement, seconds=seconds,
                    error=f"build on {builder} returned {len(outs)} output(s) and "
                    f"{len(drvs)} deriver(s) for {len(hosts)} host(s)",
                )
            return
        try:
            self.derivations[builder] = parse_derivations(show or "{}", builder)
        except ConfigError as exc:
            self.say(builder, f"derivations unavailable for the diff gate: {exc}")
        built = list(placement)
        for h, out, drv in zip(hosts, outs, drvs, strict=True):
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
            res = run_on(
                builder,
                builder_data[builder],
                script,
                stdin=key.secret_bytes if key is not None else b"",
            )
            took = time.monotonic() - started
            if not res.ok:
                why = nix_error(res.stderr)
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
        res = run_on(outcome.host, tdata, script)
        outcome.copy_seconds = time.monotonic() - started
        stderr = res.stderr
        outcome.fetched = sum(1 for ln in stderr.splitlines() if _FETCHED.match(ln))
        if res.ok:
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
        user = tdata.get("ssh_user") or "root"
        destination = f"{user}@{tdata.get('ssh_hostname') or outcome.host}"
        started = time.monotonic()
        try:
            res = copy_closure(
                host_transport(outcome.builder, bdata),
                [outcome.closure],
                destination,
                ssh_options=_port_options(tdata),
                timeout=BUILD_TIMEOUT,
            )
        except HostUnreachable as exc:
            res = Completed(outcome.builder, exc.command, exc.rc, "", exc.reason)
        outcome.copy_seconds = time.monotonic() - started
        if not res.ok:
            err = " | ".join(res.stderr.strip().splitlines()[-3:])
            outcome.error = f"copy from {outcome.builder} to {outcome.host} failed: {err}"
