"""Gather what the report page shows: run reports from ``reports/``, and, where they
answer, ``nixify status --json``, ``nixify secrets audit --json`` and the release
tags. Each source that fails is named on the page with the reason; none stops the
page from being made."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nixify.docs.provenance import provenance
from nixify.git import run_git
from nixify.pipeline.report import RunReport
from nixify.report.page import PageData, ReleaseTagRow

DEFAULT_TIMEOUT = 120.0


def read_reports(directory: Path) -> tuple[RunReport | None, list[tuple[str, RunReport]],
                                           list[str]]:
    """``latest.json`` and every ``deploy-*.json``/``rollback-*.json`` (newest first),
    and a note for each file that could not be read."""
    notes: list[str] = []
    latest: RunReport | None = None
    if not directory.is_dir():
        return None, [], [f"run reports: {directory} does not exist (no deploy has run here)"]

    def load(path: Path) -> RunReport | None:
        try:
            return RunReport.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, ValidationError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            notes.append(f"run report {path}: unreadable: {first}")
            return None

    if (directory / "latest.json").is_file():
        latest = load(directory / "latest.json")
    else:
        notes.append(f"run reports: no {directory / 'latest.json'}")
    history = []
    for path in sorted(directory.glob("*-*.json"), reverse=True):
        if path.name.startswith(("deploy-", "rollback-")):
            rep = load(path)
            if rep is not None:
                history.append((path.name, rep))
    return latest, history, notes


def run_json(argv: Sequence[str], cwd: Path, timeout: float, what: str
             ) -> tuple[Mapping[str, Any] | None, str | None]:
    """Run a nixify command that prints JSON; its document, or why there is none.
    A non-zero exit with a JSON document (status with drift, audit with problems)
    still counts: the page shows what it says."""
    cmd = [sys.executable, "-m", "nixify.cli", *argv]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"{what}: `nixify {' '.join(argv)}` took longer than {timeout:.0f} s"
    except OSError as exc:
        return None, f"{what}: cannot run nixify: {exc}"
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        err = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}")
        last = err.splitlines()[-1] if err else f"exit {proc.returncode}"
        return None, f"{what}: `nixify {' '.join(argv)}` exited {proc.returncode}: {last[:400]}"
    if not isinstance(doc, Mapping):
        return None, f"{what}: `nixify {' '.join(argv)}` printed no JSON object"
    return doc, None


def release_tags(repo: Path) -> tuple[list[ReleaseTagRow], str | None]:
    """Every ``release/*`` tag: name, target, commit, date."""
    fmt = "%(refname:strip=2)%09%(*objectname)%09%(objectname)%09%(creatordate:iso-strict)"
    proc = run_git(repo, ("tag", "-l", "release/*", f"--format={fmt}"))
    if proc.returncode != 0:
        return [], f"release tags: git tag failed in {repo}: {proc.stderr.strip()[:200]}"
    rows = []
    for line in proc.stdout.splitlines():
        name, peeled, obj, date = [*line.split("\t"), "", "", ""][:4]
        parts = name.split("/")
        target = "/".join(parts[1:-1]) if len(parts) >= 3 else "?"
        rows.append(ReleaseTagRow(name, target, peeled or obj, date))
    return rows, None


def collect(root: Path, reports_dir: Path, *, live: bool = True,
            inventory: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> PageData:
    latest, history, notes = read_reports(reports_dir)
    status = audit = None
    if live:
        argv = ["status", "--json"] + (["--inventory", inventory] if inventory else [])
        status, note = run_json(argv, root, timeout, "fleet status")
        if note:
            notes.append(note)
        audit, note = run_json(["secrets", "audit", "--json"], root, timeout, "secrets audit")
        if note:
            notes.append(note)
    else:
        notes.append("fleet status and secrets audit: not asked (--offline)")
    tags, note = release_tags(root)
    if note:
        notes.append(note)
    prov = provenance(root)
    return PageData(
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        provenance=prov.line,
        latest=latest,
        latest_name=str(reports_dir / "latest.json"),
        history=history,
        status=status,
        audit=audit,
        tags=tags,
        unavailable=notes,
    )
