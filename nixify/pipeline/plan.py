"""A fleet-wide plan: gates 1-3 on every selected host, read as a reviewer reads it.

``nixify plan`` runs ``deploy.py --data mode=plan`` (gates 1-3, nothing activated,
no deploy lock) and hands its ``RunReport`` to ``build_plan``, which groups the
fleet's changes by cause::

    openssl 3.0.13 → 3.0.15 (root cause: version): 11 hosts — wsl_dev x4, laptop x3, ...

A cause is a root-cause derivation of gate 2's RCA and the fields of it that
changed (the same derivation change on every host it reaches is one cause); a host
without an RCA falls back to its package version changes. Then per role: added and
removed packages and the closure size; the hosts that would be skipped or fail, and
why; drift against the declared ``expect``; and each host's own details.

``render_plan`` is the human text (nvd-like), ``FleetPlan.to_text()`` the JSON
beside it. A saved plan is handed to a later deploy (``--data plan=FILE``), whose
gate 4 calls ``check_planned`` and refuses a host whose new closure is not the one
planned.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nixify.errors import ConfigError
from nixify.nix import store_path_name
from nixify.pipeline.report import HostReport, HostStatus, RunReport
from nixify.util import atomic_write

PLAN_SCHEMA = 1
_STORE_PATH = re.compile(r"/nix/store/[0-9a-z]{32}-([^\s/'\"]+)")
TIMES = "\u00d7"  # the multiplication sign of "wsl_dev x4"


def human_size(n: int, signed: bool = False) -> str:
    """Bytes in binary units (``nixify.diff``'s format; pipeline and diff are siblings)."""
    sign = ("+" if n > 0 else "-" if n < 0 else "±") if signed else ""
    value = float(abs(n))
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{sign}{int(value)} B" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    return f"{sign}{value:.1f} GiB"


def _split(name: str, package: str) -> tuple[str, str]:
    """(package, version) of a derivation name whose package is known."""
    if package and name.startswith(package + "-"):
        return package, name[len(package) + 1:]
    if name == package:
        return package, ""
    for i in range(len(name) - 1):  # Nix's DrvName: the version starts at "-<not a letter>"
        if name[i] == "-" and not name[i + 1].isalpha():
            return name[:i], name[i + 1:]
    return name, ""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CauseChange(_Model):
    """One field of a root-cause derivation that changed (``nixify.diff.rca.Change``)."""

    kind: str
    field: str = ""
    old: str | None = None
    new: str | None = None


class PlanCause(_Model):
    """One cause of change, and every host it reaches."""

    key: str  # stable across hosts: the derivation's name change and its changed fields
    title: str  # "openssl 3.0.13 → 3.0.15"
    root_cause: str  # "version", "source hash", "env NIX_CFLAGS", ...
    package: str
    derivation: str | None = None  # the new (or old, when removed) derivation's name
    changes: list[CauseChange] = Field(default_factory=list)
    analysed: bool = True  # False: no RCA, the package version change stands in
    hosts: list[str] = Field(default_factory=list)
    roles: dict[str, int] = Field(default_factory=dict)  # role -> hosts of it

    @property
    def line(self) -> str:
        roles = ", ".join(f"{r} {TIMES}{n}" for r, n in _by_count(self.roles))
        n = len(self.hosts)
        return f"{self.title} (root cause: {self.root_cause}): {n} host{'s' * (n != 1)} — {roles}"


class PackageDelta(_Model):
    """A package change on one host: ``old`` and ``new`` versions (empty when none)."""

    name: str
    old: list[str] = Field(default_factory=list)
    new: list[str] = Field(default_factory=list)
    size_delta: int = 0

    @property
    def text(self) -> str:
        return f"{self.name} {_versions(self.old)} → {_versions(self.new)}"


class HostPlan(_Model):
    """One host's plan: what it runs, what it would run, and why it would change."""

    host: str
    role: str
    status: str  # "planned" | "unchanged" | "first" | "skipped" | "failed" | "unreachable"
    reason: str | None = None
    builder: str | None = None
    previous: str | None = None
    closure: str | None = None  # the planned new closure (gate 1)
    causes: list[str] = Field(default_factory=list)  # PlanCause keys
    changed: list[PackageDelta] = Field(default_factory=list)
    added: list[PackageDelta] = Field(default_factory=list)
    removed: list[PackageDelta] = Field(default_factory=list)
    rebuilt: int = 0  # packages rebuilt at the same version
    old_size: int | None = None
    new_size: int | None = None
    drift: list[str] = Field(default_factory=list)  # changes outside ``expect``
    dry_activate: str | None = None  # gate 3's result

    @property
    def would_deploy(self) -> bool:
        return self.status in ("planned", "unchanged", "first")


class RolePlan(_Model):
    """A role's hosts in the plan: packages added and removed, closure sizes."""

    role: str
    hosts: list[str] = Field(default_factory=list)
    changing: list[str] = Field(default_factory=list)
    added: list[str] = Field(default_factory=list)  # "name version"
    removed: list[str] = Field(default_factory=list)
    old_size: dict[str, int] = Field(default_factory=dict)  # host -> bytes
    new_size: dict[str, int] = Field(default_factory=dict)


class PlanDrift(_Model):
    """The plan against the declared expectation."""

    expect: list[str] = Field(default_factory=list)
    ok: bool = True
    unexpected: dict[str, list[str]] = Field(default_factory=dict)  # host -> what

    @property
    def declared(self) -> bool:
        return bool(self.expect)


class FleetPlan(_Model):
    """The whole plan: causes first, then roles, skipped hosts, drift, hosts."""

    schema_version: int = PLAN_SCHEMA
    started: str | None = None
    finished: str | None = None
    commit: str | None = None
    dirty: bool | None = None
    operator: str = ""
    causes: list[PlanCause] = Field(default_factory=list)
    roles: list[RolePlan] = Field(default_factory=list)
    hosts: dict[str, HostPlan] = Field(default_factory=dict)
    drift: PlanDrift = Field(default_factory=PlanDrift)

    @property
    def skipped(self) -> dict[str, str]:
        """Hosts a deploy would not deploy, and why."""
        return {n: h.reason or h.status for n, h in sorted(self.hosts.items())
                if not h.would_deploy}

    @property
    def ok(self) -> bool:
        """Every host would deploy, and nothing changes outside ``expect``."""
        return bool(self.hosts) and not self.skipped and self.drift.ok

    def to_json(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        doc["ok"] = self.ok
        doc["skipped"] = self.skipped
        return doc

    def to_text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def write(self, path: Path) -> None:
        atomic_write(path, self.to_text())


def _by_count(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _versions(versions: Iterable[str]) -> str:
    items = [v if v else "ε" for v in versions]
    return ", ".join(items) if items else "∅"


def _drv_name(path: str | None) -> str | None:
    if not path:
        return None
    try:
        name = store_path_name(path)
    except ValueError:
        name = path.rsplit("/", 1)[-1]
    return name.removesuffix(".drv")


# -- causes ------------------------------------------------------------------------------

_QUIET_ENV = frozenset({"name"})  # follows the version; says nothing on its own


def _root_cause(changes: list[CauseChange]) -> str:
    """What changed, in a reviewer's words: ``version``, ``source hash``, ``env X``."""
    labels: list[str] = []
    for c in changes:
        if c.kind == "env":
            label = c.field if c.field in ("version", "src") else f"env {c.field}"
        elif c.kind == "fixed-output":
            label = "source hash"
        elif c.kind in ("source", "source-added", "source-removed"):
            label = f"source {c.field}".strip()
        elif c.kind in ("input-added", "input-removed"):
            label = f"{c.kind.replace('-', ' ')} {c.field}".strip()
        else:
            label = c.kind
        if label not in labels:
            labels.append(label)
    loud = [lbl for lbl in labels if lbl not in {f"env {q}" for q in _QUIET_ENV}]
    return ", ".join(loud or labels) or "derivation changed"


def _cause_from_rca(doc: Mapping[str, Any]) -> PlanCause:
    changes = [CauseChange.model_validate(c) for c in doc.get("changes") or []]
    old, new = _drv_name(doc.get("old_drv")), _drv_name(doc.get("new_drv"))
    package = str(doc.get("package") or _split(new or old or "?", "")[0])
    old_v = _split(old, package)[1] if old else None
    new_v = _split(new, package)[1] if new else None
    if old_v is None:
        title = f"{package} {new_v or ''} added".replace("  ", " ")
    elif new_v is None:
        title = f"{package} {old_v} removed"
    elif old_v != new_v:
        title = f"{package} {old_v or 'ε'} → {new_v or 'ε'}"
    else:
        title = f"{package} {new_v} rebuilt".replace("  ", " ")
    fields = ";".join(f"{c.kind}:{c.field}:{c.old}:{c.new}" for c in changes)
    return PlanCause(
        key=f"{old or '∅'}→{new or '∅'}|{fields}",
        title=title,
        root_cause=_root_cause(changes),
        package=package,
        derivation=new or old,
        changes=changes,
    )


def _cause_from_package(change: PackageDelta, kind: str, why: str) -> PlanCause:
    """No RCA for the host: the package version change stands in for its cause."""
    if kind == "added":
        title = f"{change.name} {_versions(change.new)} added"
    elif kind == "removed":
        title = f"{change.name} {_versions(change.old)} removed"
    else:
        title = change.text
    return PlanCause(
        key=f"pkg|{kind}|{change.name}|{','.join(change.old)}|{','.join(change.new)}",
        title=title,
        root_cause=why,
        package=change.name,
        analysed=False,
    )


def _names_only(text: str) -> str:
    """``text`` with each store path shown by its name (the same words on every host)."""
    return _STORE_PATH.sub(lambda m: m.group(1), text)


def _unexplained_cause(doc: Mapping[str, Any]) -> PlanCause:
    path = str(doc.get("path") or "?")
    name = (_drv_name(path) or path) if path.startswith("/") else path
    package, version = _split(name, "")
    side = str(doc.get("side") or "new")
    reason = str(doc.get("reason") or "not explained")
    verb = "added" if side == "new" else "removed"
    return PlanCause(
        key=f"unexplained|{side}|{name}|{reason}",
        title=f"{package} {version} {verb}".replace("  ", " "),
        root_cause=f"unexplained: {reason}",
        package=package,
        derivation=name,
    )


# -- hosts --------------------------------------------------------------------------------


def _evidence(rep: HostReport, gate: str) -> dict[str, Any]:
    result = rep.gates.get(gate)
    return dict(result.evidence) if result is not None else {}


def _host_plan(rep: HostReport) -> tuple[HostPlan, list[PlanCause]]:
    plan = HostPlan(host=rep.host, role=rep.role, status="planned", builder=rep.builder,
                    previous=rep.previous, closure=rep.closure)
    dry = rep.gates.get("dry-activate")
    plan.dry_activate = dry.result.value if dry is not None else None
    if not rep.status.ok:
        plan.status = {
            HostStatus.SKIPPED: "skipped",
            HostStatus.UNREACHABLE: "unreachable",
        }.get(rep.status, "failed")
        plan.reason = rep.reason or rep.status.value
    ev = _evidence(rep, "diff")
    diff = ev.get("diff")
    if not isinstance(diff, dict):
        diff_gate = rep.gates.get("diff")
        if plan.status == "planned" and diff_gate is not None and rep.previous is None:
            plan.status = "first"
            plan.reason = "no running system to compare with (a first deploy)"
        return plan, []
    plan.changed = [
        PackageDelta(name=p["name"], old=p.get("removed_versions") or p.get("old_versions", []),
                     new=p.get("added_versions") or p.get("new_versions", []),
                     size_delta=int(p.get("size_delta") or 0))
        for p in diff.get("packages") or []
    ]
    plan.added = [PackageDelta(name=p["name"], new=p.get("versions", []),
                               size_delta=int(p.get("size") or 0))
                  for p in diff.get("added") or []]
    plan.removed = [PackageDelta(name=p["name"], old=p.get("versions", []),
                                 size_delta=-int(p.get("size") or 0))
                    for p in diff.get("removed") or []]
    plan.rebuilt = len(diff.get("rebuilt") or [])
    closure = diff.get("closure") or {}
    plan.old_size = closure.get("old_size")
    plan.new_size = closure.get("new_size")
    drift = ev.get("drift") or {}
    plan.drift = [str(u) for u in drift.get("unexpected") or []]
    causes: list[PlanCause] = []
    rca = ev.get("rca")
    # the system itself changes whenever anything does: a consequence, not a cause
    system = {_split(_drv_name(r) or "", "")[0]
              for r in (closure.get("old"), closure.get("new")) if r}
    deltas = [*(("changed", c) for c in plan.changed), *(("added", c) for c in plan.added),
              *(("removed", c) for c in plan.removed)]
    if isinstance(rca, dict):
        causes += [_cause_from_rca(c) for c in rca.get("causes") or []]
        # what the walk could not explain: its package's version change stands in
        unexplained: dict[str, str] = {}
        for u in rca.get("unexplained") or []:
            if u.get("side") != "new":
                continue
            package = _split(_drv_name(str(u.get("path"))) or "", "")[0]
            if package not in system:
                unexplained.setdefault(package, _names_only(str(u.get("reason") or "")))
        for kind, c in deltas:
            if c.name in unexplained:
                why = unexplained.pop(c.name)
                causes.append(_cause_from_package(c, kind, f"not analysed: {why}"))
        causes += [_unexplained_cause({"path": p, "reason": why, "side": "new"})
                   for p, why in unexplained.items()]
    else:
        why = "not analysed: " + _names_only(str(ev.get("rca_note") or "no root-cause analysis"))
        causes += [_cause_from_package(c, kind, why) for kind, c in deltas
                   if c.name not in system]
    if plan.status == "planned" and (rep.closure == rep.previous or not (
            causes or plan.changed or plan.added or plan.removed or plan.rebuilt)):
        plan.status = "unchanged"
    plan.causes = [c.key for c in causes]
    return plan, causes


def build_plan(report: RunReport, expect: Iterable[str] = ()) -> FleetPlan:
    """The plan of a ``mode=plan`` (or ``dry``) run's report: changes by cause, by
    role, skipped hosts, drift against ``expect`` (as the run's gate 2 judged it)."""
    plan = FleetPlan(started=report.started, finished=report.finished, commit=report.commit,
                     dirty=report.dirty, operator=report.operator)
    causes: dict[str, PlanCause] = {}
    roles: dict[str, RolePlan] = {}
    for name in sorted(report.hosts):
        rep = report.hosts[name]
        host, host_causes = _host_plan(rep)
        plan.hosts[name] = host
        for cause in host_causes:
            known = causes.setdefault(cause.key, cause)
            if name not in known.hosts:
                known.hosts.append(name)
                known.roles[host.role] = known.roles.get(host.role, 0) + 1
        role = roles.setdefault(host.role, RolePlan(role=host.role))
        role.hosts.append(name)
        if host.causes or host.changed or host.added or host.removed:
            role.changing.append(name)
        for d in host.added:
            item = f"{d.name} {_versions(d.new)}"
            if item not in role.added:
                role.added.append(item)
        for d in host.removed:
            item = f"{d.name} {_versions(d.old)}"
            if item not in role.removed:
                role.removed.append(item)
        if host.old_size is not None and host.new_size is not None:
            role.old_size[name] = host.old_size
            role.new_size[name] = host.new_size
    plan.causes = sorted(causes.values(), key=lambda c: (-len(c.hosts), c.title, c.key))
    plan.roles = [roles[r] for r in sorted(roles)]
    declared = sorted(set(expect))
    unexpected = {n: h.drift for n, h in plan.hosts.items() if h.drift}
    plan.drift = PlanDrift(expect=declared, ok=not (declared and unexpected),
                           unexpected=unexpected if declared else {})
    return plan


# -- a saved plan, checked at gate 4 --------------------------------------------------------


def load_plan(path: Path) -> FleetPlan:
    """A plan saved by ``nixify plan --out``; ``ConfigError`` naming the file and the field."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--data plan={path}: cannot read the plan: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"--data plan={path}: not a plan (not JSON: {exc})") from None
    if not isinstance(doc, dict) or "hosts" not in doc:
        raise ConfigError(f"--data plan={path}: not a plan (no `hosts`; save one with "
                          "`nixify plan --out FILE`)")
    version = doc.get("schema_version")
    if version != PLAN_SCHEMA:
        raise ConfigError(f"--data plan={path}: schema_version {version!r}, this nixify reads "
                          f"{PLAN_SCHEMA}: plan again")
    try:
        return FleetPlan.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"--data plan={path}: field {where}: {err['msg']}") from None


def check_planned(plan: FleetPlan, host: str, closure: str) -> str | None:
    """Why ``host`` must not activate ``closure`` under ``plan`` (None: it may)."""
    planned = plan.hosts.get(host)
    if planned is None:
        return f"not in the plan (it planned {len(plan.hosts)} hosts: " \
               f"{', '.join(sorted(plan.hosts)) or 'none'}); plan again"
    if not planned.would_deploy:
        return f"the plan would not deploy it ({planned.status}: {planned.reason}); plan again"
    if planned.closure != closure:
        return (f"its new closure {closure} is not the planned {planned.closure} "
                "(the fleet changed after the plan); nothing activated: plan again")
    return None


# -- human output --------------------------------------------------------------------------


def _size_line(role: RolePlan) -> str:
    if not role.new_size:
        return "closure size: not compared"
    deltas = sorted({role.new_size[h] - role.old_size[h] for h in role.new_size})
    news = sorted(set(role.new_size.values()))
    olds = sorted(set(role.old_size.values()))

    def span(values: list[int], signed: bool = False) -> str:
        lo, hi = human_size(values[0], signed), human_size(values[-1], signed)
        return lo if lo == hi else f"{lo} .. {hi}"

    return f"closure {span(olds)} → {span(news)} ({span(deltas, signed=True)})"


def render_plan(plan: FleetPlan, detail: bool = True) -> str:
    """The plan as a reviewer reads it: causes with host counts, roles, skipped hosts,
    drift, then (``detail``) each host."""
    hosts = plan.hosts
    count = Counter(h.status for h in hosts.values())
    changing = sum(1 for h in hosts.values() if h.causes or h.changed or h.added or h.removed)
    lines = [
        f"Plan on {len(hosts)} host{'s' * (len(hosts) != 1)}: nothing activated on any host "
        f"({changing} would change, {count['unchanged']} unchanged"
        + (f", {count['first']} first deploy" if count["first"] else "")
        + (f", {len(plan.skipped)} would not deploy" if plan.skipped else "") + ")",
    ]
    if plan.commit:
        lines.append(f"from commit {plan.commit[:12]}" + (" (dirty tree)" if plan.dirty else ""))
    lines.append("")
    lines.append(f"Changes by cause ({len(plan.causes)}):" if plan.causes
                 else "Changes by cause: none")
    for i, cause in enumerate(plan.causes, 1):
        lines.append(f"  #{i} {cause.line}")
        for ch in cause.changes:
            lines.append(f"      - {_describe(ch)}")
    lines.append("")
    lines.append("By role:")
    for role in plan.roles:
        n = len(role.hosts)
        head = f"  {role.role} {TIMES}{n}: {len(role.changing)} of {n} change; {_size_line(role)}"
        lines.append(head)
        if role.added:
            lines.append(f"      + added: {', '.join(role.added)}")
        if role.removed:
            lines.append(f"      - removed: {', '.join(role.removed)}")
    lines.append("")
    if plan.skipped:
        lines.append(f"Would not deploy ({len(plan.skipped)}):")
        for name, why in plan.skipped.items():
            lines.append(f"  {name} ({hosts[name].role}): {hosts[name].status}: {why}")
    else:
        lines.append("Would not deploy: none")
    lines.append("")
    drift = plan.drift
    if not drift.declared:
        lines.append("Drift: no expectation declared (--expect); reporting only")
    elif drift.ok:
        lines.append(f"Drift against expect={','.join(drift.expect)}: none, as declared")
    else:
        lines.append(f"Drift against expect={','.join(drift.expect)}: NOT as declared "
                     f"({len(drift.unexpected)} host{'s' * (len(drift.unexpected) != 1)})")
        for name, what in sorted(drift.unexpected.items()):
            for w in what:
                lines.append(f"  {name}: {_names_only(w.splitlines()[0])}")
    if detail:
        lines.append("")
        lines.append("Per host:")
        index = {c.key: i for i, c in enumerate(plan.causes, 1)}
        for name, h in sorted(hosts.items()):
            lines.append(f"  {name} ({h.role}): {_host_line(h, index)}")
            for d in h.changed:
                lines.append(f"      ~ {d.text}  {human_size(d.size_delta, signed=True)}")
            for d in h.added:
                lines.append(f"      + {d.name} {_versions(d.new)}")
            for d in h.removed:
                lines.append(f"      - {d.name} {_versions(d.old)}")
    verdict = "matches the declaration" if plan.ok else "does NOT match: " + ", ".join(
        w for w, bad in (("hosts would not deploy", bool(plan.skipped)),
                         ("drift", not drift.ok), ("no hosts", not hosts)) if bad)
    lines += ["", f"Plan {verdict}."]
    return "\n".join(lines) + "\n"


def _describe(ch: CauseChange) -> str:
    def show(v: str | None) -> str:
        if v is None:
            return "∅"
        return repr(v) if len(v) <= 60 else repr(v[:28] + "…" + v[-28:])

    where = f"{ch.kind} {ch.field}".strip()
    return f"{where}: {show(ch.old)} -> {show(ch.new)}"


def _host_line(h: HostPlan, index: Mapping[str, int]) -> str:
    if not h.would_deploy:
        return f"{h.status.upper()}: {h.reason}"
    if h.status == "unchanged":
        return "unchanged" + (f", dry-activate {h.dry_activate}" if h.dry_activate else "")
    if h.status == "first":
        return f"first deploy of {h.closure}"
    causes = ", ".join(f"#{index[k]}" for k in h.causes if k in index) or "none"
    size = ""
    if h.old_size is not None and h.new_size is not None:
        size = f"; closure {human_size(h.new_size - h.old_size, signed=True)}"
    return (f"causes {causes}; {len(h.changed)} changed, {len(h.added)} added, "
            f"{len(h.removed)} removed, {h.rebuilt} rebuilt{size}; "
            f"dry-activate {h.dry_activate or '-'}")
