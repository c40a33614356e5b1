"""Publish a run's releases: one annotated tag per target on the validated commit,
then a fast-forward of ``release/<target>`` to it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nixify.errors import NixifyError
from nixify.pipeline.report import RunReport, utc_stamp
from nixify.release.evidence import ReleaseEvidence, hosts_evidence, parse_message
from nixify.release.git import (
    ReleaseError,
    check_fast_forward,
    identity_args,
    list_tags,
    make_tag,
    move_branch,
    release_refs,
    resolve,
    short_rev,
)
from nixify.release.names import release_branch, release_tag
from nixify.release.plan import ReleasePlan


@dataclass
class ReleaseOutcome:
    """What publishing one target did: the tag, the branch, or why not."""

    target: str
    target_kind: str
    hosts: list[str]
    tag: str | None = None
    tag_object: str | None = None
    branch: str | None = None
    branch_action: str | None = None  # created | advanced | unchanged | refused
    branch_old: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        if self.tag is None and self.branch_action == "unchanged":
            return f"release {self.target}: {self.error}; {self.branch} unchanged"
        if self.tag is None:
            return f"release {self.target}: NOT tagged, {self.branch or 'branch'} NOT moved: " \
                f"{self.error}"
        text = f"release {self.target}: tagged {self.tag}"
        if self.branch_action == "refused":
            return f"{text}; {self.branch} NOT moved: {self.error}"
        if self.branch_action == "unchanged":
            return f"{text}; {self.branch} already there"
        if self.branch_action == "created":
            return f"{text}; {self.branch} created"
        return f"{text}; {self.branch} fast-forwarded from {(self.branch_old or '')[:12]}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _already_released(
    repo: Path, target: str, commit: str, evidence: ReleaseEvidence
) -> str | None:
    """The newest tag of ``target`` when it names this commit and these closures."""
    tags = list_tags(repo, target)
    if not tags or tags[-1].commit != commit:
        return None
    old = parse_message(tags[-1].message)
    if old is None:
        return None
    closures = {h.host: h.closure for h in old.hosts}
    return tags[-1].name if closures == {h.host: h.closure for h in evidence.hosts} else None


def publish(
    repo: Path,
    report: RunReport,
    plan: ReleasePlan,
    stamp: str | None = None,
    on_tagged: Callable[[ReleaseOutcome], None] | None = None,
) -> list[ReleaseOutcome]:
    """Tag and advance every target of ``plan``; a refusal for one target does not
    stop the others, and each outcome says what happened. ``on_tagged`` is called as
    soon as a target's tag exists (the caller can start work that needs the name)."""
    if plan.skipped or not plan.targets:
        return []
    assert report.commit
    new = resolve(repo, report.commit)
    if new is None:
        raise ReleaseError(f"{repo}: the run's commit {report.commit} is not in this repository")
    stamp = stamp or utc_stamp()
    rev = short_rev(repo, new)
    identity = identity_args(repo)
    tips = release_refs(repo)
    outcomes = []
    for target in plan.targets:
        out = ReleaseOutcome(target.name, target.kind, list(target.hosts))
        outcomes.append(out)
        evidence = ReleaseEvidence(
            target=target.name,
            target_kind=target.kind,
            commit=new,
            kind=report.kind,
            mode=report.mode,
            operator=report.operator,
            started=report.started,
            hosts=hosts_evidence([report.hosts[h] for h in target.hosts]),
        )
        out.branch = release_branch(target.name)
        same = _already_released(repo, target.name, new, evidence)
        if same is not None:  # a re-deploy of a release: no second tag for the same thing
            out.branch_action = "unchanged"
            out.error = f"already released as {same} (same commit and closures)"
            continue
        try:
            # a commit release/<target> cannot fast-forward to gets no release tag either:
            # every release/<target>/* tag stays in the history of release/<target>
            old = check_fast_forward(repo, target.name, new, tips)
        except ReleaseError as exc:
            out.branch_action = "refused"
            out.error = str(exc)
            continue
        try:
            name = release_tag(target.name, stamp, rev)
            make_tag(repo, name, new, evidence.message(name), identity)
            out.tag = name
        except NixifyError as exc:
            out.error = str(exc)
            continue
        if on_tagged is not None:
            on_tagged(out)
        try:
            update = move_branch(repo, target.name, new, old, reason=name)
        except ReleaseError as exc:
            out.branch_action = "refused"
            out.error = str(exc)
            continue
        out.branch_action = update.action
        out.branch_old = update.old
    if any(o.tag for o in outcomes):
        objects = release_refs(repo)
        for o in outcomes:
            o.tag_object = objects.get(f"refs/tags/{o.tag}") if o.tag else None
    return outcomes
