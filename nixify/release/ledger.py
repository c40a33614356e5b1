"""The known-good ledger: which closure was validated from which commit, on which
host, under which release tag. Derived only from what the hosts keep (their pins
and records) and what git keeps (release tags and their evidence), so losing the
operator's local reports loses nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nixify.pipeline.pins import KnownGoodRecord, activation_order
from nixify.release.evidence import ReleaseEvidence, parse_message
from nixify.release.git import ReleaseTag


@dataclass(frozen=True)
class LedgerEntry:
    """One known-good record on one host, joined with its release tag (if any).

    ``commit`` is the commit the closure was validated from: the tag's commit when
    a tag carries the record, else the record's own commit for a deploy, else (a
    rollback record) the commit of the deploy record with the same closure.
    ``tag_via`` says how the tag was found: "record" (the host's record names it),
    "evidence" (the tag's message lists this host's record), "closure" (a rollback
    record restoring a closure a tag carries), or None.
    """

    host: str
    record: KnownGoodRecord
    tag: str | None
    tag_via: str | None
    commit: str | None

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def closure(self) -> str:
        return self.record.closure

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "record": r.name,
            "closure": r.closure,
            "utc": r.utc,
            "kind": r.kind,
            "dirty": r.dirty,
            "recorded_commit": r.commit,
            "commit": self.commit,
            "tag": self.tag,
            "tag_via": self.tag_via,
        }


@dataclass
class Ledger:
    """Per host, its known-good entries oldest first; and every release tag."""

    hosts: dict[str, list[LedgerEntry]] = field(default_factory=dict)
    tags: list[ReleaseTag] = field(default_factory=list)
    evidence: dict[str, ReleaseEvidence | None] = field(default_factory=dict)

    def newest(self, host: str) -> LedgerEntry | None:
        entries = self.hosts.get(host) or []
        return entries[-1] if entries else None

    def tag(self, name: str) -> ReleaseTag | None:
        return next((t for t in self.tags if t.name == name), None)

    def tag_hosts(self, name: str) -> dict[str, dict[str, str]]:
        """host -> closure and record, as the tag's evidence lists them."""
        ev = self.evidence.get(name)
        return {h.host: {"closure": h.closure, "record": h.known_good}
                for h in (ev.hosts if ev else [])}

    def to_json(self) -> dict[str, Any]:
        return {
            "hosts": {h: [e.to_json() for e in es] for h, es in sorted(self.hosts.items())},
            "tags": [
                {
                    "name": t.name,
                    "target": t.parts.target,
                    "commit": t.commit,
                    "tagged": t.tagged,
                    "hosts": self.tag_hosts(t.name),
                }
                for t in self.tags
            ],
        }


@dataclass(frozen=True)
class TagIndex:
    """Which tag's evidence names a (host, record) or a (host, closure); for a closure
    carried by several tags, the newest."""

    by_record: dict[tuple[str, str], str]
    by_closure: dict[tuple[str, str], str]
    evidence: dict[str, ReleaseEvidence | None]

    @classmethod
    def of(cls, tags: Sequence[ReleaseTag]) -> TagIndex:
        evidence = {t.name: parse_message(t.message) for t in tags}
        by_record: dict[tuple[str, str], str] = {}
        by_closure: dict[tuple[str, str], str] = {}
        for t in tags:  # oldest first: a later tag of the same closure wins
            ev = evidence[t.name]
            for h in ev.hosts if ev else []:
                by_record[(h.host, h.known_good)] = t.name
                by_closure[(h.host, h.closure)] = t.name
        return cls(by_record, by_closure, evidence)

    def tag_of(self, host: str, record: str | None, closure: str | None) -> str | None:
        return self.by_record.get((host, record or "")) or self.by_closure.get(
            (host, closure or ""))


def build_ledger(
    records: Mapping[str, Sequence[KnownGoodRecord]], tags: Sequence[ReleaseTag]
) -> Ledger:
    """Join each host's records with the release tags whose evidence names them."""
    index = TagIndex.of(tags)
    evidence = index.evidence
    by_name = {t.name: t for t in tags}
    by_record, by_closure = index.by_record, index.by_closure
    ledger = Ledger(tags=list(tags), evidence=evidence)
    for host, recs in records.items():
        ordered = sorted(recs, key=activation_order)  # the last one is the current point
        deploy_commit = {r.closure: r.commit for r in ordered if r.kind == "deploy" and r.commit}
        entries = []
        for rec in ordered:
            tag, via = None, None
            if rec.tag:
                tag, via = rec.tag, "record"
            elif (host, rec.name) in by_record:
                tag, via = by_record[(host, rec.name)], "evidence"
            elif rec.kind != "deploy" and (host, rec.closure) in by_closure:
                tag, via = by_closure[(host, rec.closure)], "closure"
            if tag and tag in by_name:
                commit: str | None = by_name[tag].commit
            elif rec.kind == "deploy":
                commit = rec.commit
            else:
                commit = deploy_commit.get(rec.closure, rec.commit)
            entries.append(LedgerEntry(host, rec, tag, via, commit))
        ledger.hosts[host] = entries
    return ledger
