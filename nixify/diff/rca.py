"""Root-cause analysis: which derivation-level changes explain a closure diff.

The walk pairs the old and the new root derivations and descends into every
pair of input derivations whose outputs differ. At each pair it compares the
derivation's own fields (builder, args, env, system, sources, input set) after
replacing every store path that belongs to an input (or to the derivation's
own outputs) by a symbolic name; whatever still differs is a *leaf cause* of
that pair. A path's causes are the leaf causes of its derivation and of every
input below it, so a library bump that rebuilds 200 dependents is one cause
with 200 consequences, and a rebuild without a version change is attributed to
its cause instead of being listed as noise.

Paths the walk cannot explain (no deriver recorded, ``.drv`` not available,
not reached from the root) are listed with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nixify.diff.closure import Closure
from nixify.diff.derivations import Derivation, DerivationSource
from nixify.diff.names import split_drv_name
from nixify.diff.render import render_rca
from nixify.diff.versions import ClosureDiff, diff_closures
from nixify.nix import store_path_name

_STORE_PATH_IN_TEXT = re.compile(r"/nix/store/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]+")

Pair = tuple[str, str]  # (old .drv, new .drv)


@dataclass(frozen=True, slots=True)
class Change:
    """One difference in one derivation's own fields."""

    kind: str  # env, fixed-output, builder, args, system, outputs, source, source-added,
    # source-removed, input-added, input-removed, unknown
    field: str  # env variable, source or input name, "" for builder/args/system
    old: str | None
    new: str | None

    def describe(self) -> str:
        o, n = _snippet(self.old, self.new)
        if self.kind == "env":
            return f"environment {self.field}: {o} -> {n}"
        if self.kind == "fixed-output":
            return f"fixed-output {self.field}: {o} -> {n}"
        if self.kind in ("builder", "system", "args", "outputs"):
            return f"{self.kind}: {o} -> {n}"
        if self.kind == "source":
            return f"source {self.field} changed: {o} -> {n}"
        if self.kind == "source-added":
            return f"source {self.field} added: {n}"
        if self.kind == "source-removed":
            return f"source {self.field} removed: {o}"
        if self.kind == "input-added":
            return f"input derivation {self.field} added: {n}"
        if self.kind == "input-removed":
            return f"input derivation {self.field} removed: {o}"
        return f"{self.field or 'derivation'} differs: {o} -> {n}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "field": self.field, "old": self.old, "new": self.new}


def _snippet(old: str | None, new: str | None, context: int = 24) -> tuple[str, str]:
    """Both values, cut down to the part that differs (with some context) when long."""
    if old is None or new is None or len(old) + len(new) <= 120:
        return ("∅" if old is None else repr(old)), ("∅" if new is None else repr(new))
    start = 0
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    end = 0
    while end < min(len(old), len(new)) - start and old[-1 - end] == new[-1 - end]:
        end += 1
    lo = max(0, start - context)

    def cut(v: str) -> str:
        hi = min(len(v), len(v) - end + context)
        body = v[lo:hi]
        if len(body) > 2 * context + 80:
            body = body[: 2 * context + 80] + "…"
        return ("…" if lo > 0 else "") + repr(body) + ("…" if hi < len(v) else "")

    return cut(old), cut(new)


@dataclass
class Cause:
    """A derivation whose own fields changed, and the closure paths it changed."""

    old_drv: str | None
    new_drv: str | None
    changes: list[Change]
    consequences: set[str] = field(default_factory=set)  # new-closure paths it produced
    removes: set[str] = field(default_factory=set)  # old-closure paths gone because of it

    @property
    def name(self) -> str:
        drv = self.new_drv or self.old_drv or ""
        n = store_path_name(drv)
        return n[:-4] if n.endswith(".drv") else n

    @property
    def package(self) -> str:
        return split_drv_name(self.name)[0]

    def labels(self) -> frozenset[str]:
        """Names a drift policy may use to expect this cause."""
        out = {self.name, self.package}
        for c in self.changes:
            out.add(f"{c.kind}:{c.field}" if c.field else c.kind)
            if c.kind in ("env", "fixed-output"):
                out.add(f"{self.package}.{c.field}")
        return frozenset(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "derivation": self.name,
            "package": self.package,
            "old_drv": self.old_drv,
            "new_drv": self.new_drv,
            "changes": [c.to_json() for c in self.changes],
            "consequences": sorted(self.consequences),
            "removes": sorted(self.removes),
        }


@dataclass(frozen=True, slots=True)
class Unexplained:
    """A changed path the walk could not attribute, and why."""

    path: str
    side: str  # "new" (only in the new closure) or "old" (only in the old one)
    reason: str


@dataclass
class RootCauseReport:
    """Causes (deduplicated) with their consequences, and what stayed unexplained."""

    diff: ClosureDiff
    causes: list[Cause]
    unexplained: list[Unexplained]

    @property
    def complete(self) -> bool:
        return not self.unexplained

    def causes_of(self, path: str) -> list[Cause]:
        return [c for c in self.causes if path in c.consequences or path in c.removes]

    def to_json(self) -> dict[str, Any]:
        return {
            "causes": [c.to_json() for c in self.causes],
            "unexplained": [
                {"path": u.path, "side": u.side, "reason": u.reason} for u in self.unexplained
            ],
            "counts": {
                "causes": len(self.causes),
                "explained_paths": len(self.diff.added_paths)
                + len(self.diff.removed_paths)
                - len(self.unexplained),
                "unexplained_paths": len(self.unexplained),
            },
        }

    def render(self, limit: int = 12) -> str:
        return render_rca(self, limit=limit)


# -- the walk -----------------------------------------------------------------


def _pair_inputs(old: Iterable[str], new: Iterable[str]) -> tuple[list[Pair], list[str], list[str]]:
    """Pair input paths: same path, then same name, then same package name if unique,
    then the last one left on each side if both carry the same version (a rename)."""
    old_left = [p for p in old]
    new_set = set(new)
    pairs: list[Pair] = [(p, p) for p in old_left if p in new_set]
    old_left = [p for p in old_left if p not in new_set]
    same = {p for p, _ in pairs}
    new_left = [p for p in sorted(new_set) if p not in same]

    def match(key: Callable[[str], str]) -> None:
        nonlocal old_left, new_left
        old_by: dict[str, list[str]] = {}
        new_by: dict[str, list[str]] = {}
        for p in old_left:
            old_by.setdefault(key(p), []).append(p)
        for p in new_left:
            new_by.setdefault(key(p), []).append(p)
        taken: set[str] = set()
        for k, olds in old_by.items():
            news = new_by.get(k, [])
            if len(olds) == 1 and len(news) == 1:
                pairs.append((olds[0], news[0]))
                taken.update((olds[0], news[0]))
        old_left = [p for p in old_left if p not in taken]
        new_left = [p for p in new_left if p not in taken]

    match(_path_name)
    match(lambda p: split_drv_name(_path_name(p))[0])
    if len(old_left) == 1 and len(new_left) == 1:
        # One input left on each side at the same version: a rename. Pairing them
        # lets the walk find the one leaf cause instead of an added and a removed
        # input in every dependent.
        version_o = split_drv_name(_path_name(old_left[0]))[1]
        version_n = split_drv_name(_path_name(new_left[0]))[1]
        if version_o and version_o == version_n:
            pairs.append((old_left[0], new_left[0]))
            old_left, new_left = [], []
    return pairs, old_left, new_left


def _path_name(path: str) -> str:
    n = store_path_name(path)
    return n[:-4] if n.endswith(".drv") else n


def _normalise(text: str, tokens: Mapping[str, str]) -> str:
    if "/nix/store/" not in text:
        return text
    return _STORE_PATH_IN_TEXT.sub(lambda m: tokens.get(m.group(0), m.group(0)), text)


@dataclass
class _Node:
    changes: list[Change]
    children: list[Pair]
    added_inputs: list[str]  # new .drv paths only the new side uses
    removed_inputs: list[str]
    new_sources: list[str]  # new-only source paths (consequences of this node)
    old_sources: list[str]


class _Walker:
    def __init__(self, old_drvs: DerivationSource, new_drvs: DerivationSource) -> None:
        self.old_drvs = old_drvs
        self.new_drvs = new_drvs
        self.nodes: dict[Pair, _Node] = {}
        self.done: dict[Pair, frozenset[Pair]] = {}
        self.reasons: dict[str, str] = {}  # output path -> why it is unexplained
        self.blocked: list[str] = []  # where the walk had to stop, and why

    def old(self, path: str) -> Derivation | None:
        return self.old_drvs.get(path) or self.new_drvs.get(path)

    def new(self, path: str) -> Derivation | None:
        return self.new_drvs.get(path) or self.old_drvs.get(path)

    def ensure(self, old: Iterable[str], new: Iterable[str]) -> None:
        """Fetch (lazily read sources) what the next step needs, in one batch per side."""
        old, new = list(old), list(new)
        if self.old_drvs is self.new_drvs:
            self.old_drvs.ensure([*old, *new])
        else:
            self.old_drvs.ensure(old)
            self.new_drvs.ensure(new)

    def walk(self, root: Pair) -> None:
        """Analyse every changed pair below ``root``, level by level, then fold causes up."""
        self.ensure([root[0]], [root[1]])
        level = [root]
        queued = {root}
        while level:
            # Each pair's analysis needs its changed inputs' derivations: fetch them together.
            need_o: list[str] = []
            need_n: list[str] = []
            for o_path, n_path in level:
                o, n = self.old(o_path), self.new(n_path)
                if o is None or n is None:
                    continue
                pairs, removed, added = _pair_inputs(o.input_drvs, n.input_drvs)
                for po, pn in pairs:
                    if po != pn:
                        need_o.append(po)
                        need_n.append(pn)
                need_o += removed
                need_n += added
            self.ensure(need_o, need_n)
            following: list[Pair] = []
            for pair in level:
                node = self.nodes[pair] = self.analyse(pair)
                for child in node.children:
                    if child not in queued:
                        queued.add(child)
                        following.append(child)
            level = following
        self.fold(root)

    def fold(self, root: Pair) -> None:
        """Each pair's causes: its own, and those of every pair below it (post-order)."""
        stack: list[tuple[Pair, bool]] = [(root, False)]
        while stack:
            pair, expanded = stack.pop()
            if pair in self.done:
                continue
            node = self.nodes[pair]
            if not expanded:
                stack.append((pair, True))
                stack.extend((c, False) for c in node.children if c not in self.done)
                continue
            causes: set[Pair] = {pair} if node.changes else set()
            for child in node.children:
                causes |= self.done.get(child, frozenset())
            self.done[pair] = frozenset(causes)

    def analyse(self, pair: Pair) -> _Node:
        o_path, n_path = pair
        o, n = self.old(o_path), self.new(n_path)
        if o is None or n is None:
            where = self.old_drvs.source if o is None else self.new_drvs.source
            missing = o_path if o is None else n_path
            reason = f"derivation {missing} is not available on {where} (no .drv)"
            for d in (o, n):
                if d is not None:
                    for out in d.outputs.values():
                        self.reasons.setdefault(out, reason)
            self.reasons.setdefault(f"drv:{missing}", reason)
            self.blocked.append(reason)
            return _Node([], [], [], [], [], [])

        tokens_o: dict[str, str] = {}
        tokens_n: dict[str, str] = {}
        for name in o.outputs.keys() | n.outputs.keys():
            if name in o.outputs:
                tokens_o[o.outputs[name]] = f"<self.{name}>"
            if name in n.outputs:
                tokens_n[n.outputs[name]] = f"<self.{name}>"

        changes: list[Change] = []
        children: list[Pair] = []
        pairs, removed, added = _pair_inputs(o.input_drvs, n.input_drvs)
        for po, pn in pairs:
            if po == pn:
                continue  # the same input: its paths read the same on both sides
            label = _path_name(po)
            do, dn = self.old(po), self.new(pn)
            for d, tokens in ((do, tokens_o), (dn, tokens_n)):
                if d is not None:
                    for out_name, out_path in d.outputs.items():
                        tokens[out_path] = f"<{label}.{out_name}>"
            if do is not None and dn is not None and dict(do.outputs) == dict(dn.outputs):
                continue  # e.g. a fixed-output input with the same hash: nothing downstream moved
            children.append((po, pn))
        # Paths of inputs only one side has vanish from its strings: their
        # appearance is explained by the input-added/-removed change itself.
        for p in added:
            changes.append(Change("input-added", _path_name(p), None, p))
            self.blank(p, self.new, tokens_n)
        for p in removed:
            changes.append(Change("input-removed", _path_name(p), p, None))
            self.blank(p, self.old, tokens_o)

        src_pairs, src_removed, src_added = _pair_inputs(o.input_srcs, n.input_srcs)
        new_sources: list[str] = list(src_added)
        old_sources: list[str] = list(src_removed)
        for so, sn in src_pairs:
            label = f"<src:{store_path_name(sn)}>"
            tokens_o[so], tokens_n[sn] = label, label
            if so != sn:
                changes.append(Change("source", store_path_name(sn), so, sn))
                new_sources.append(sn)
                old_sources.append(so)
        for p in src_added:
            changes.append(Change("source-added", store_path_name(p), None, p))
            tokens_n[p] = ""
        for p in src_removed:
            changes.append(Change("source-removed", store_path_name(p), p, None))
            tokens_o[p] = ""

        loose = bool(added or removed or src_added or src_removed)
        own = self.own_changes(o, n, tokens_o, tokens_n, loose)
        if not own and not changes and not children:
            # Nothing survives normalisation: show the raw differences instead.
            own = self.own_changes(o, n, {}, {}, False) or [Change("unknown", "", o_path, n_path)]
        changes = own + changes
        return _Node(changes, children, added, removed, new_sources, old_sources)

    @staticmethod
    def own_changes(
        o: Derivation,
        n: Derivation,
        tokens_o: Mapping[str, str],
        tokens_n: Mapping[str, str],
        loose: bool,
    ) -> list[Change]:
        """Differences in ``o``/``n``'s own fields once input paths are named alike.

        ``loose``: also ignore whitespace, where blanked-out paths of added or
        removed inputs leave gaps.
        """

        def same(a: str, b: str) -> bool:
            na, nb = _normalise(a, tokens_o), _normalise(b, tokens_n)
            return na == nb or (loose and na.split() == nb.split())

        changes: list[Change] = []
        if not same(o.builder, n.builder):
            changes.append(Change("builder", "", o.builder, n.builder))
        if o.system != n.system:
            changes.append(Change("system", "", o.system, n.system))
        if sorted(o.outputs) != sorted(n.outputs):
            changes.append(
                Change("outputs", "", " ".join(sorted(o.outputs)), " ".join(sorted(n.outputs)))
            )
        if len(o.args) != len(n.args) or not all(map(same, o.args, n.args)):
            changes.append(Change("args", "", " ".join(o.args), " ".join(n.args)))
        fixed = n.is_fixed_output or o.is_fixed_output
        for key in sorted(o.env.keys() | n.env.keys()):
            ov, nv = o.env.get(key), n.env.get(key)
            if ov is not None and nv is not None and same(ov, nv):
                continue
            if ov is None and nv is None:
                continue
            kind = "fixed-output" if fixed and key.startswith("outputHash") else "env"
            changes.append(Change(kind, key, ov, nv))
        return changes

    @staticmethod
    def blank(
        path: str, lookup: Callable[[str], Derivation | None], tokens: dict[str, str]
    ) -> None:
        d = lookup(path)
        if d is not None:
            for out in d.outputs.values():
                tokens[out] = ""

    def subtree_outputs(
        self,
        root: str,
        drvs: DerivationSource,
        fallback: DerivationSource,
        keep: Callable[[str], bool],
    ) -> set[str]:
        """Output paths of ``root`` and of everything below it that ``keep`` accepts."""
        out: set[str] = set()
        seen = {root}
        level = [root]
        while level:
            drvs.ensure(level)
            following: list[str] = []
            for current in level:
                d = drvs.get(current) or fallback.get(current)
                if d is None:
                    continue
                outs = [p for p in d.outputs.values() if p]
                kept = [p for p in outs if keep(p)]
                if outs and not kept:
                    continue  # every output is in the other closure: nothing changed below
                out.update(kept)
                out.update(s for s in d.input_srcs if keep(s))
                for inp in d.input_drvs:
                    if inp not in seen:
                        seen.add(inp)
                        following.append(inp)
            level = following
        return out


def explain(
    diff_or_closures: ClosureDiff | tuple[Closure, Closure],
    old_drvs: DerivationSource,
    new_drvs: DerivationSource | None = None,
) -> RootCauseReport:
    """Attribute every path that changed between two closures to its leaf causes.

    ``old_drvs``/``new_drvs`` hold the derivations of the old and the new
    closure (the same set when one builder has both): a ``DerivationSet``
    read beforehand, or ``LazyDerivations`` that reads only what the walk
    reaches. Missing ones only make the affected paths unexplained, with the
    reason.
    """
    if isinstance(diff_or_closures, ClosureDiff):
        diff = diff_or_closures
    else:
        diff = diff_closures(*diff_or_closures)
    new_set = new_drvs if new_drvs is not None else old_drvs
    added_paths, removed_paths = diff.added_paths, diff.removed_paths
    if not added_paths and not removed_paths:
        return RootCauseReport(diff, [], [])

    walker = _Walker(old_drvs, new_set)
    old_root = diff.old.paths[diff.old.root].deriver
    new_root = diff.new.paths[diff.new.root].deriver
    root_reason = ""
    if old_root is None or new_root is None:
        which = diff.old.root if old_root is None else diff.new.root
        root_reason = f"closure root {which} records no deriver (substituted from a cache?)"
    elif old_root != new_root:
        walker.walk((old_root, new_root))

    new_causes: dict[str, set[Pair]] = {}
    old_causes: dict[str, set[Pair]] = {}
    for pair, below in walker.done.items():
        node = walker.nodes[pair]
        o, n = walker.old(pair[0]), walker.new(pair[1])
        if n is not None:
            for p in n.outputs.values():
                new_causes.setdefault(p, set()).update(below)
        if o is not None:
            for p in o.outputs.values():
                old_causes.setdefault(p, set()).update(below)
        if not node.changes:
            continue
        for p in node.new_sources:
            new_causes.setdefault(p, set()).add(pair)
        for p in node.old_sources:
            old_causes.setdefault(p, set()).add(pair)
        for d in node.added_inputs:
            for p in walker.subtree_outputs(d, new_set, old_drvs, added_paths.__contains__):
                new_causes.setdefault(p, set()).add(pair)
        for d in node.removed_inputs:
            for p in walker.subtree_outputs(d, old_drvs, new_set, removed_paths.__contains__):
                old_causes.setdefault(p, set()).add(pair)

    causes: dict[Pair, Cause] = {}

    def cause(pair: Pair) -> Cause:
        if pair not in causes:
            causes[pair] = Cause(pair[0], pair[1], walker.nodes[pair].changes)
        return causes[pair]

    unexplained: list[Unexplained] = []
    missing = old_drvs.missing | new_set.missing

    def why(path: str, closure: Closure) -> str:
        if root_reason:
            return root_reason
        if path in walker.reasons:
            return walker.reasons[path]
        deriver = closure.paths[path].deriver
        if deriver is None:
            return "no deriver recorded for this path (substituted from a cache?)"
        if f"drv:{deriver}" in walker.reasons:
            return walker.reasons[f"drv:{deriver}"]
        if deriver in missing:
            where = new_set.source if closure is diff.new else old_drvs.source
            return f"derivation {deriver} is not available on {where} (no .drv)"
        if walker.blocked:
            return f"the walk could not go on where {walker.blocked[0]}"
        return "not reached from the root derivation by the walk"

    for side, paths, table, closure in (
        ("new", added_paths, new_causes, diff.new),
        ("old", removed_paths, old_causes, diff.old),
    ):
        for p in sorted(paths):
            found = table.get(p)
            if not found:
                unexplained.append(Unexplained(p, side, why(p, closure)))
                continue
            for pair in found:
                c = cause(pair)
                (c.consequences if side == "new" else c.removes).add(p)

    ordered = sorted(causes.values(), key=lambda c: (-len(c.consequences) - len(c.removes), c.name))
    return RootCauseReport(diff, ordered, unexplained)
