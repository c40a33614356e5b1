"""Releases after a deploy.

``publish_releases(run, report_path)`` runs once at the end of a deploy (from
``Run.finish``): it plans the targets the run earned (nixify.release.plan), tags
and fast-forwards them in the run's git repository, stamps each released host's
known-good record with its tag (so ``rollback --to TAG`` finds it on the host),
prints what it did or why not, and adds it to the run's report as ``releases``.

(The status probe is ``operations/status.py``.)
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nixify.errors import NixifyError
from nixify.inventory import ssh_args_from_data
from nixify.pipeline.pins import RECORD_DIR, KnownGoodRecord
from nixify.release.git import list_tags
from nixify.release.ledger import TagIndex
from nixify.release.names import parse_release_tag
from nixify.release.plan import ROLLBACK_GATES, ReleasePlan, passed_every_gate, plan_releases
from nixify.release.publish import ReleaseOutcome, publish
from nixify.transport import Completed, HostUnreachable, SshTransport
from nixify.util import atomic_write
from operations.run import Run

SSH_TIMEOUT = 30


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _inventory_roles(state: Any) -> dict[str, list[str]]:
    """Role -> every host the inventory has of it, whatever the --limit."""
    roles: dict[str, list[str]] = {}
    if state is None:
        return roles
    for host in state.inventory:
        roles.setdefault(str(host.data.get("role")), []).append(host.name)
    return roles


def _host_data(state: Any) -> dict[str, Any]:
    return {} if state is None else {h.name: h.data for h in state.inventory}


def _record_path(name: str) -> str:
    return f"{RECORD_DIR}/{name}.json"


def _on_host(host: str, data: Any, script: str) -> Completed:
    """``script`` on ``host`` over SSH; a host that does not answer is a failed command
    whose stderr says why."""
    try:
        return SshTransport(host, ssh_args_from_data(host, data)).run(script, timeout=SSH_TIMEOUT)
    except HostUnreachable as exc:
        return Completed(host, script, exc.rc, "", f"did not answer: {exc.reason}")


def _in_parallel(
    jobs: dict[str, tuple[Any, str]], pool: ThreadPoolExecutor | None = None
) -> dict[str, Future[Completed]]:
    """host -> (data, script): every script started at once, one thread per host."""
    own = pool or ThreadPoolExecutor(max_workers=max(1, min(32, len(jobs))))
    try:
        return {h: own.submit(_on_host, h, d, script) for h, (d, script) in jobs.items()}
    finally:
        if pool is None:
            own.shutdown(wait=False)


def _tag_line(tag: str | None) -> str:
    """The exact line ``KnownGoodRecord.to_json`` writes for ``tag``."""
    rec = KnownGoodRecord(
        name="n", host="h", closure="c", commit=None, dirty=None, utc="u", kind="deploy", tag=tag
    )
    return next(line for line in rec.to_json().splitlines() if line.lstrip().startswith('"tag"'))


def _stamp_script(record: str, tag: str, directory: str = RECORD_DIR) -> str:
    """One round trip: replace the record's empty tag line, atomically; exit 3 when the
    record has no such line (then the general path reads and rewrites it)."""
    path, tmp = f"{directory}/{record}.json", f"{directory}/.{record}.tag.tmp"
    old, new = shlex.quote(_tag_line(None)), shlex.quote(_tag_line(tag))
    return (
        f"grep -qxF -- {old} {shlex.quote(path)} || exit 3; "
        f"awk -v old={old} -v new={new} '$0 == old {{ print new; next }} {{ print }}' "
        f"{shlex.quote(path)} > {shlex.quote(tmp)} && mv {shlex.quote(tmp)} {shlex.quote(path)}"
    )


class RecordStamper:
    """Writes each release tag into the host's known-good record with an atomic
    rename: started per target as soon as its tag exists, hosts in parallel, one
    round trip each when the record is as gate 5 wrote it."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.wanted: dict[str, tuple[str, str]] = {}
        self.procs: dict[str, Future[Completed]] = {}
        self.errors: dict[str, str | None] = {}
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="nixify-stamp")

    def start(self, host: str, record: str, tag: str) -> None:
        self.wanted[host] = (record, tag)
        if host not in self.data:
            self.errors[host] = "not in the inventory"
            return
        self.procs.update(
            _in_parallel({host: (self.data[host], _stamp_script(record, tag))}, self._pool)
        )

    def finish(self) -> dict[str, str | None]:
        """Host -> error (None when stamped)."""
        general: dict[str, tuple[str, str]] = {}
        for host, future in self.procs.items():
            res = future.result()
            if res.rc == 3:
                general[host] = self.wanted[host]
            else:
                self.errors[host] = (
                    None
                    if res.ok
                    else (
                        f"cannot stamp {_record_path(self.wanted[host][0])}: "
                        f"{res.stderr.strip()[-200:]}"
                    )
                )
        self._pool.shutdown(wait=False)
        if general:
            self.errors.update(_stamp_by_rewrite(general, self.data))
        return self.errors


def _stamp_by_rewrite(
    hosts: dict[str, tuple[str, str]], data: dict[str, Any]
) -> dict[str, str | None]:
    """The general path: read each record, set its tag, write it back (two round trips)."""
    errors: dict[str, str | None] = {}
    to_read: dict[str, tuple[Any, str]] = {}
    for host, (record, _tag) in hosts.items():
        if host not in data:
            errors[host] = "not in the inventory"
            continue
        to_read[host] = (data[host], f"cat {shlex.quote(_record_path(record))}")
    reads = _in_parallel(to_read)
    to_write: dict[str, tuple[Any, str]] = {}
    for host, future in reads.items():
        record, tag = hosts[host]
        read = future.result()
        if not read.ok:
            errors[host] = f"cannot read {_record_path(record)}: {read.stderr.strip()[-200:]}"
            continue
        try:
            rec = KnownGoodRecord.from_json(read.stdout)
        except (ValueError, TypeError) as exc:
            errors[host] = f"{_record_path(record)}: unreadable record: {exc}"
            continue
        new = KnownGoodRecord(**{**json.loads(rec.to_json()), "tag": tag})
        blob = shlex.quote(base64.b64encode(new.to_json().encode()).decode())
        path = _record_path(record)
        tmp = f"{RECORD_DIR}/.{record}.tag.tmp"
        script = (
            f"echo {blob} | base64 -d > {shlex.quote(tmp)} && "
            f"mv {shlex.quote(tmp)} {shlex.quote(path)}"
        )
        to_write[host] = (data[host], script)
    for host, future in _in_parallel(to_write).items():
        wrote = future.result()
        errors[host] = None if wrote.ok else f"cannot write: {wrote.stderr.strip()[-200:]}"
    return errors


def _restored_releases(run: Run) -> dict[str, tuple[str, str]]:
    """After a rollback: host -> (its new record, the release tag of the closure it
    returned to), so the host's own record says which release it runs again."""
    if run.kind != "rollback":
        return {}
    index: TagIndex | None = None
    out: dict[str, tuple[str, str]] = {}
    for host, rep in run.report.hosts.items():
        if not passed_every_gate(rep, ROLLBACK_GATES) or not rep.known_good:
            continue
        wanted = parse_release_tag(run.options.to or "")
        if wanted is not None:  # `--to TAG`: the record matched by its tag
            out[host] = (rep.known_good, wanted.name)
            continue
        if index is None:
            index = TagIndex.of(list_tags(run.repo)) if run.report.commit else TagIndex.of([])
        select = rep.gates.get("select")
        tag = index.tag_of(host, select.evidence.get("record") if select else None, rep.closure)
        if tag:
            out[host] = (rep.known_good, tag)
    return out


def _add_to_report(paths: list[Path], releases: dict[str, Any]) -> None:
    for path in paths:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        doc["releases"] = releases
        atomic_write(path, json.dumps(doc, indent=2) + "\n", sync_dir=False)


def publish_releases(run: Run, report_path: Path | None, state: Any) -> list[ReleaseOutcome]:
    """After a run: tag and advance what it earned; print and report it. Never raises
    (the run is over; a release problem is reported, the pins stay)."""
    started = time.monotonic()
    plan = ReleasePlan()
    outcomes: list[ReleaseOutcome] = []
    stamped: dict[str, str | None] = {}
    try:
        if not run.options.release:
            plan = ReleasePlan(skipped="--data release=off")
        else:
            plan = plan_releases(run.report, _inventory_roles(state))
        if plan.skipped:
            _say(f"release: none: {plan.skipped}")
        restored = _restored_releases(run)
        for note in plan.notes:
            _say(f"release: {note}")
        stamper = RecordStamper(_host_data(state))

        def stamp(out: ReleaseOutcome) -> None:
            for h in out.hosts:
                stamper.start(h, run.report.hosts[h].known_good or "", out.tag or "")

        for host, (record, tag) in sorted(restored.items()):
            _say(f"release: {host}: rollback record {record} restores {tag}")
            stamper.start(host, record, tag)
        outcomes = publish(run.repo, run.report, plan, on_tagged=stamp)
        tagged = time.monotonic()
        for out in outcomes:
            _say(out.describe())
        stamped = stamper.finish()
        for host, err in sorted(stamped.items()):
            if err:
                _say(f"release: {host}: known-good record not stamped with its tag: {err}")
        if stamped:
            done = sum(1 for e in stamped.values() if e is None)
            _say(
                f"release: {sum(1 for o in outcomes if o.tag)} tag(s) in "
                f"{tagged - started:.2f}s; {done}/{len(stamped)} host record(s) stamped "
                f"{time.monotonic() - started:.2f}s after the run"
            )
    except (NixifyError, OSError, subprocess.SubprocessError) as exc:
        _say(f"release: FAILED: {exc}")
        plan.notes.append(f"failed: {exc}")
    except Exception as exc:  # the run is over: report, never a traceback at exit
        _say(f"release: FAILED unexpectedly: {type(exc).__name__}: {exc}")
        plan.notes.append(f"failed: {exc}")
    if report_path is not None:
        _add_to_report(
            [report_path, report_path.parent / "latest.json"],
            {
                "skipped": plan.skipped,
                "notes": plan.notes,
                "outcomes": [o.to_json() for o in outcomes],
                "stamped": stamped,
            },
        )
    return outcomes
