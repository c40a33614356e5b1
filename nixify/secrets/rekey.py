"""Rekey runs: bring every secret file's recipients to its creation rule.

Per file: read it, open the data key with the operator's identity, verify the
MAC (a tampered file is never passed on to new recipients), re-encrypt the
same data key to the recipients the rule adds, drop the ones it removes, and
replace the file atomically (temp file in the same directory, fsync, rename,
fsync the directory). A file already keyed right is not touched. Files are
processed in parallel worker processes; a killed run leaves each file either
old or new.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyrage
import yaml

from nixify.errors import ConfigError
from nixify.secrets.keys import find_identities, identities_from_file
from nixify.secrets.recipients import RECORD_NAME
from nixify.secrets.rules import (
    CONFIG_NAME,
    LoadedRule,
    RuleIndex,
    find_config,
    load_sops_yaml,
)
from nixify.secrets.sopsfile import SopsError, SopsFile
from nixify.util import atomic_write, fsync_dir

# .env/.ini/.bin are sops formats nixify does not handle: discovered so that a rekey
# reports them (SopsFile.load refuses them by name) instead of skipping them silently
SECRET_SUFFIXES = (".yaml", ".yml", ".json", ".env", ".ini", ".bin")
MOUNTS_NAME = "mounts.yaml"  # host -> files it mounts, when not read from the inventory
Status = Literal["unchanged", "rekeyed", "would-rekey", "error"]


@dataclass(frozen=True)
class RekeyResult:
    path: str
    relpath: str
    status: Status
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class RekeyJob:
    path: str
    relpath: str
    recipients: tuple[str, ...]


@dataclass
class RekeyReport:
    results: list[RekeyResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status != "error" for r in self.results)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)


def discover(paths: Sequence[Path]) -> list[Path]:
    """Secret files under ``paths`` (files as given; directories searched), sorted."""
    found: set[Path] = set()
    for p in paths:
        if p.is_dir():
            for f in p.rglob("*"):
                if (
                    f.is_file()
                    and f.suffix in SECRET_SUFFIXES
                    and f.name not in (CONFIG_NAME, RECORD_NAME, MOUNTS_NAME)
                    and not f.name.startswith(".")
                ):
                    found.add(f)
        elif p.is_file():
            found.add(p)
        else:
            raise ConfigError(f"{p}: no such file or directory")
    return sorted(found)


def plan_jobs(
    files: Sequence[Path], config: Path, rules: Sequence[LoadedRule] | None = None
) -> list[RekeyJob]:
    """Each file with its rule's recipients; ConfigError (nothing written) on a file with none."""
    rules = load_sops_yaml(config) if rules is None else rules
    base = config.parent.resolve()
    index = RuleIndex(rules, config)
    jobs = []
    for f in files:
        try:
            rel = f.resolve().relative_to(base).as_posix()
        except ValueError:
            rel = f.as_posix()
        rule = index.rule_for(rel)
        jobs.append(RekeyJob(str(f), rel, rule.recipients))
    return jobs


# ---------------------------------------------------------------- workers

_IDENTITIES: list[pyrage.x25519.Identity] = []


def _init_worker(identity_files: Sequence[str]) -> None:
    global _IDENTITIES
    if identity_files:
        _IDENTITIES = [i.identity for f in identity_files for i in identities_from_file(Path(f))]
    else:
        _IDENTITIES = [i.identity for i in find_identities()]


def _prepare(job: RekeyJob, dry_run: bool) -> tuple[RekeyResult, str | None]:
    """One file's result and, when it must change, its new text (nothing written)."""
    try:
        sf = SopsFile.load(job.path)
        current = sf.recipients
        wanted = list(job.recipients)
        added = tuple(r for r in wanted if r not in current)
        removed = tuple(r for r in current if r not in wanted)
        key = sf.data_key(_IDENTITIES)
        # every value and the MAC, before anything is written, and for a file left as
        # it is too: a corrupt file is an error of the run, named, never "unchanged"
        sf.decrypt_tree(key)
        if not added and not removed:
            return RekeyResult(job.path, job.relpath, "unchanged"), None
        if dry_run:
            return RekeyResult(job.path, job.relpath, "would-rekey", added, removed), None
        text = sf.with_recipients(wanted, key)
        return RekeyResult(job.path, job.relpath, "rekeyed", added, removed), text
    except (SopsError, ConfigError, OSError) as exc:
        return RekeyResult(job.path, job.relpath, "error", error=str(exc)), None


def rekey_one(job: RekeyJob, dry_run: bool, sync_dir: bool = True) -> RekeyResult:
    """Rekey one file (in the calling process, with the loaded identities)."""
    result, text = _prepare(job, dry_run)
    if text is not None:
        try:
            atomic_write(Path(job.path), text.encode(), sync_dir=sync_dir)
        except OSError as exc:
            return RekeyResult(job.path, job.relpath, "error", error=str(exc))
    return result


def _stage(path: Path, payload: bytes) -> str:
    """``payload`` in a temp file beside ``path`` (its mode), written, not yet synced."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(payload)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rekey_batch(jobs: Sequence[RekeyJob], dry_run: bool) -> list[RekeyResult]:
    """Rekey ``jobs``: every new file is staged in a temp file, then all temp files are
    fsynced, then each is renamed over its file, then each directory fsynced once.

    Each file is still either old or new at every instant (a rename only follows its
    temp file's fsync), but the batch waits for the disk once, not once per file:
    the fsyncs after the first find their data already committed (measured by
    bench/rekey.py, where per-file fsyncs kept the workers waiting on the journal).
    A killed run leaves temp files, which the next run removes.
    """
    results: list[RekeyResult] = []
    staged: list[tuple[int, str]] = []  # (index in results, temp file)
    try:
        for job in jobs:
            result, text = _prepare(job, dry_run)
            if text is not None:
                try:
                    staged.append((len(results), _stage(Path(job.path), text.encode())))
                except OSError as exc:
                    result = RekeyResult(job.path, job.relpath, "error", error=str(exc))
            results.append(result)
        done: list[tuple[int, str]] = []
        for i, tmp in staged:
            try:
                _fsync_file(tmp)
                done.append((i, tmp))
            except OSError as exc:
                Path(tmp).unlink(missing_ok=True)
                r = results[i]
                results[i] = RekeyResult(r.path, r.relpath, "error", error=str(exc))
        staged = done
        while staged:
            i, tmp = staged.pop(0)
            try:
                os.replace(tmp, results[i].path)
            except OSError as exc:
                Path(tmp).unlink(missing_ok=True)
                r = results[i]
                results[i] = RekeyResult(r.path, r.relpath, "error", error=str(exc))
    finally:
        for _, tmp in staged:  # interrupted: no temp file is left behind by this process
            Path(tmp).unlink(missing_ok=True)
    for directory in sorted({Path(r.path).parent for r in results if r.status == "rekeyed"}):
        fsync_dir(directory)
    return results


def _work(args: tuple[list[RekeyJob], bool]) -> list[RekeyResult]:
    return rekey_batch(*args)


def run_rekey(
    jobs: Sequence[RekeyJob],
    *,
    dry_run: bool = False,
    identity_files: Sequence[Path] = (),
    workers: int | None = None,
) -> RekeyReport:
    """Rekey ``jobs`` in parallel; results in the jobs' order."""
    files = [str(p) for p in identity_files]
    _init_worker(files)  # fail early, in this process, if no identity is found
    # fsync waits on the disk, so twice as many workers as CPUs keep both busy
    workers = workers or min(2 * (os.cpu_count() or 1), 16)
    if workers <= 1 or len(jobs) < 8:
        return RekeyReport(rekey_batch(list(jobs), dry_run))
    size = max(1, min(32, len(jobs) // (workers * 2)))
    batches = [list(jobs[i : i + size]) for i in range(0, len(jobs), size)]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(files,)
    ) as pool:
        results = [r for batch in pool.map(_work, [(b, dry_run) for b in batches]) for r in batch]
    return RekeyReport(results)


def rekey_paths(
    paths: Sequence[Path],
    *,
    config: Path | None = None,
    dry_run: bool = False,
    identity_files: Sequence[Path] = (),
    workers: int | None = None,
) -> RekeyReport:
    """Discover the files under ``paths``, match their rules, rekey them.

    One rekey at a time per secrets tree (a lock beside ``.sops.yaml``); temp files
    a killed run left behind are removed first (they only ever hold ciphertext).
    """
    files = discover(paths)
    config = config or _config_for(paths)
    jobs = plan_jobs(files, config)
    with _tree_lock(config):
        if not dry_run:
            _remove_stale_temps({Path(j.path).parent for j in jobs})
        return run_rekey(jobs, dry_run=dry_run, identity_files=identity_files, workers=workers)


@contextmanager
def _tree_lock(config: Path) -> Iterator[None]:
    """An exclusive flock on the tree's ``.sops.yaml`` (no lock file is left behind)."""
    fd = os.open(config, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ConfigError(f"{config.parent}: another rekey is running") from exc
        yield
    finally:
        os.close(fd)


def _remove_stale_temps(directories: set[Path]) -> None:
    for directory in directories:
        for tmp in directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _config_for(paths: Sequence[Path]) -> Path:
    """The nearest ``.sops.yaml`` above the first path, else above the working directory.

    sops looks from the working directory only; starting at the secrets
    themselves means a rekey of one tree never picks up another tree's rules.
    """
    if paths:
        try:
            return find_config(paths[0])
        except ConfigError:
            pass
    return find_config(Path.cwd())


def save_mounts(path: Path, mounts: Mapping[str, Sequence[str]]) -> None:
    """Write ``host -> [files]`` (what the audit checks readers against)."""
    lines = ["# host -> secret files it mounts (written by nixify provision)"]
    for host in sorted(mounts):
        lines.append(f"{host}: [{', '.join(sorted(mounts[host]))}]")
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        atomic_write(path, text.encode())


def load_mounts(path: Path) -> dict[str, list[str]]:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read mounts: {exc}") from exc
    if not isinstance(doc, dict) or not all(isinstance(v, list) for v in doc.values()):
        raise ConfigError(f"{path}: expected `host: [file, ...]` entries")
    return {str(h): [str(f) for f in fs] for h, fs in doc.items()}
