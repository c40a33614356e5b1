"""The five gates, as pyinfra operations on each selected host.

pyinfra runs each operation on every active host in parallel before the next
one starts, so the gates act as barriers: every host is built before any is
activated. A host that fails a gate is dropped by pyinfra from later gates;
its report says which gate and why, and its deploy lock is released.

Each operation yields one ``FunctionCommand``: nothing runs until pyinfra
executes (``pyinfra --dry`` and change detection touch no host).
"""

from __future__ import annotations

import base64
import shlex
import time
from collections import Counter
from collections.abc import Callable, Generator
from typing import Any

from pyinfra.api.command import FunctionCommand
from pyinfra.api.operation import operation

from nixify.diff import diff_closures, parse_closure_query
from nixify.diff.closure import closure_query_command
from nixify.diff.rca import RootCauseReport, explain
from nixify.errors import NixifyError
from nixify.nix import is_store_path
from nixify.pipeline.pins import (
    GCROOT_DIR,
    PIN_DIR,
    RECORD_DIR,
    KnownGoodRecord,
    pins_to_prune,
    record_name,
)
from nixify.pipeline.report import GateResult, utc_now, utc_stamp
from operations.build import BuildCoordinator
from operations.facts import DeployState, KnownGoodRecords
from operations.lock import acquire_lock, release_lock
from operations.remote import Remote, quote_argv
from operations.remote import run as remote
from operations.run import Run, current_run

SWITCH = "bin/switch-to-configuration"
PROFILE = "/nix/var/nix/profiles/system"

Gate = Callable[[Any, Any], bool]


def _q(value: str) -> str:
    return shlex.quote(value)


def _coordinator(run: Run) -> BuildCoordinator:
    coord = run.extra.get("builds")
    if coord is None:
        coord = BuildCoordinator(run.fleet_dir, run.say)
        run.extra["builds"] = coord
    assert isinstance(coord, BuildCoordinator)
    return coord


def _fail(
    run: Run,
    host: Any,
    gate: str,
    reason: str,
    started: float,
    status: str = "failed",
    evidence: dict[str, Any] | None = None,
) -> bool:
    rep = run.host_report(host)
    rep.gate(
        gate,
        GateResult(
            "skipped" if status == "skipped" else "failed",
            round(time.monotonic() - started, 3),
            reason,
            evidence or {},
        ),
    )
    if rep.status not in ("rolled-back",):
        rep.fail(status, f"gate {gate}: {reason}")
    run.say(host.name, f"gate {gate}: {status.upper()}: {reason}")
    release_lock(run, host)
    return False


def _pass(
    run: Run,
    host: Any,
    gate: str,
    started: float,
    detail: str = "",
    evidence: dict[str, Any] | None = None,
) -> bool:
    seconds = round(time.monotonic() - started, 3)
    run.host_report(host).gate(gate, GateResult("passed", seconds, detail, evidence or {}))
    run.say(host.name, f"gate {gate}: passed ({seconds:.2f}s){': ' + detail if detail else ''}")
    return True


def _guarded(gate: str, body: Gate) -> Gate:
    """Turn an unexpected error inside a gate into that gate's failure, not a traceback."""

    def wrapped(state: Any, host: Any) -> bool:
        run = current_run()
        run.executed = True
        started = time.monotonic()
        try:
            return body(state, host)
        except (NixifyError, OSError, ValueError) as exc:
            return _fail(run, host, gate, str(exc), started)
        except Exception as exc:  # a gate never ends without a reason
            return _fail(run, host, gate, f"internal error: {type(exc).__name__}: {exc}", started)

    return wrapped


def _switch(host: Any, closure: str, action: str) -> Remote:
    return remote(host, f"{_q(closure + '/' + SWITCH)} {action}")


# -- preflight ---------------------------------------------------------------------------


def _preflight(state: Any, host: Any) -> bool:
    run = current_run()
    started = time.monotonic()
    rep = run.host_report(host)
    facts = host.get_fact(DeployState)
    if not facts:
        return _fail(run, host, "preflight", "cannot read the host's state", started)
    running = facts.get("running", "")
    rep.previous = running if is_store_path(running) else None
    if facts.get("deriver", "").endswith(".drv"):
        _coordinator(run).previous_drvs[host.name] = facts["deriver"]
    if host.data.get("constrained"):
        max_jobs = facts.get("max-jobs") or "unknown"
        if max_jobs != "0":
            return _fail(
                run,
                host,
                "preflight",
                f"refused: a constrained host must never build, but its Nix has "
                f"max-jobs = {max_jobs}",
                started,
            )
    why = acquire_lock(run, host)
    if why is not None:
        return _fail(run, host, "preflight", f"refused: {why}", started)
    return True


@operation(is_idempotent=False)
def preflight() -> Generator[FunctionCommand, None, None]:
    """Take the host's deploy lock; refuse a constrained host whose Nix could build."""
    yield FunctionCommand(_guarded("preflight", _preflight), (), {})


# -- gate 1: remote evaluate + build -------------------------------------------------------


def _build(state: Any, host: Any) -> bool:
    run = current_run()
    started = time.monotonic()
    outcome = _coordinator(run).outcome(state, host)
    rep = run.host_report(host)
    rep.builder = outcome.builder
    if outcome.skipped:
        return _fail(run, host, "build", outcome.error or "skipped", started, status="skipped")
    if outcome.error or not outcome.closure:
        return _fail(run, host, "build", outcome.error or "no closure", started)
    check = remote(host, f"nix-store --check-validity {_q(outcome.closure)}")
    if not check.ok:
        return _fail(
            run,
            host,
            "build",
            f"closure not in the host's store after the copy: {check.tail()}",
            started,
        )
    rep.closure = outcome.closure
    return _pass(
        run,
        host,
        "build",
        started,
        f"on {outcome.builder}: {outcome.closure}",
        {
            "builder": outcome.builder,
            "closure": outcome.closure,
            "drv": outcome.drv,
            "derivations_built": len(outcome.built),
            "build_seconds": round(outcome.seconds, 3),
            "copy_seconds": round(outcome.copy_seconds, 3),
            "built_on": dict(sorted(Counter(outcome.placement.values()).items())),
            "pushed_to_cache": outcome.pushed,
            "fetched_from_cache": outcome.fetched,
        },
    )


@operation(is_idempotent=False)
def build() -> Generator[FunctionCommand, None, None]:
    """Gate 1: evaluate and build on a builder, copy the closure builder -> host."""
    yield FunctionCommand(_guarded("build", _build), (), {})


# -- gate 2: closure diff / RCA ----------------------------------------------------------


def _rca(run: Run, diff: Any, builder: str | None) -> RootCauseReport | None:
    """Root causes from the derivations the builder sent with its build (no extra trip)."""
    drvs = _coordinator(run).derivations.get(builder or "")
    return explain(diff, drvs) if drvs is not None else None


def _diff(state: Any, host: Any) -> bool:
    run = current_run()
    started = time.monotonic()
    rep = run.host_report(host)
    assert rep.closure
    old = rep.previous
    if old is None:
        return _pass(run, host, "diff", started, "no running system to compare with")
    texts = {}
    for path in (old, rep.closure):
        res = remote(host, quote_argv(closure_query_command(path)))
        if not res.ok:
            return _fail(run, host, "diff", f"cannot query {path}: {res.tail()}", started)
        texts[path] = res.stdout
    diff = diff_closures(
        parse_closure_query(texts[old], old, host.name),
        parse_closure_query(texts[rep.closure], rep.closure, host.name),
    )
    rca: RootCauseReport | None = None
    rca_note = ""
    try:
        rca = _rca(run, diff, rep.builder)
    except NixifyError as exc:
        rca_note = f"root-cause analysis unavailable: {exc}"
    counts = diff.counts()
    rep.diff = counts
    verdict = run.policy.check(diff, rca)
    evidence: dict[str, Any] = {
        "counts": counts,
        "diff": diff.to_json(),
        "drift": {
            "ok": verdict.ok,
            "unexpected": list(verdict.unexpected),
            "message": verdict.message,
        },
    }
    if rca is not None:
        evidence["rca"] = rca.to_json()
    if rca_note:
        evidence["rca_note"] = rca_note
    text = diff.render()
    if rca is not None and not diff.is_empty:
        text += "\n" + rca.render()
    for line in text.splitlines():
        run.say(host.name, f"  {line}")
    if not verdict.ok:
        return _fail(run, host, "diff", verdict.message, started, evidence=evidence)
    summary = (
        f"{counts['changed']} changed, {counts['added']} added, "
        f"{counts['removed']} removed, {counts['size_delta']:+d} bytes"
    )
    return _pass(run, host, "diff", started, summary, evidence)


@operation(is_idempotent=False)
def closure_diff() -> Generator[FunctionCommand, None, None]:
    """Gate 2: the version diff and root causes against the running system."""
    yield FunctionCommand(_guarded("diff", _diff), (), {})


# -- gate 3: dry-activate ----------------------------------------------------------------


def _dry_activate(state: Any, host: Any) -> bool:
    run = current_run()
    started = time.monotonic()
    rep = run.host_report(host)
    assert rep.closure
    res = _switch(host, rep.closure, "dry-activate")
    evidence = {"exit": res.rc, "output": res.stdout.splitlines()[-40:]}
    if not res.ok:
        return _fail(
            run, host, "dry-activate", f"exit {res.rc}: {res.tail()}", started, evidence=evidence
        )
    ok = _pass(run, host, "dry-activate", started, evidence=evidence)
    if run.mode == "dry":
        rep.status = "dry-run"
        release_lock(run, host)
    return ok


@operation(is_idempotent=False)
def dry_activate() -> Generator[FunctionCommand, None, None]:
    """Gate 3: ``switch-to-configuration dry-activate``."""
    yield FunctionCommand(_guarded("dry-activate", _dry_activate), (), {})


# -- gate 4: switch test, then switch or boot ----------------------------------------------


def _last_known_good(host: Any, besides: str) -> str | None:
    records = host.get_fact(KnownGoodRecords) or []
    for rec in reversed(records):
        if rec.closure != besides:
            return str(rec.closure)
    return None


def _switch_test(state: Any, host: Any) -> bool:
    run = current_run()
    started = time.monotonic()
    rep = run.host_report(host)
    if run.mode == "dry":
        return True
    new = rep.closure
    assert new
    test = _switch(host, new, "test")
    evidence: dict[str, Any] = {"test_exit": test.rc, "test_output": test.tail(20)}
    if not test.ok:
        back = _last_known_good(host, new) or rep.previous
        if back:
            restored = _switch(host, back, "test")
            evidence["returned_to"] = back
            evidence["return_exit"] = restored.rc
            rep.status = "rolled-back"
            rep.reason = (
                f"gate switch-test: exit {test.rc} ({test.tail(2)}); returned to known-good {back}"
            )
        return _fail(
            run,
            host,
            "switch-test",
            f"exit {test.rc}: {test.tail(2)}; host returned "
            f"to {back or 'nothing (no known-good closure)'}",
            started,
            evidence=evidence,
        )
    if run.mode in ("switch", "boot"):
        set_profile = remote(host, f"nix-env -p {PROFILE} --set {_q(new)}")
        if not set_profile.ok:
            return _fail(
                run,
                host,
                "switch-test",
                f"cannot set the system profile: {set_profile.tail()}",
                started,
                evidence=evidence,
            )
        if run.mode == "boot" and rep.previous:
            # proven to activate; the running system stays until the next boot
            _switch(host, rep.previous, "test")
        final = _switch(host, new, run.mode)
        evidence[f"{run.mode}_exit"] = final.rc
        if not final.ok:
            back = _last_known_good(host, new) or rep.previous
            if back:
                remote(host, f"nix-env -p {PROFILE} --set {_q(back)}")
                _switch(host, back, "switch")
                evidence["returned_to"] = back
            return _fail(
                run,
                host,
                "switch-test",
                f"{run.mode} exit {final.rc}: {final.tail(2)}",
                started,
                evidence=evidence,
            )
    return _pass(run, host, "switch-test", started, f"test ok, then {run.mode}", evidence)


@operation(is_idempotent=False)
def switch_test() -> Generator[FunctionCommand, None, None]:
    """Gate 4: ``switch-to-configuration test``; then ``switch`` or ``boot`` by mode.
    A failed test returns the host to its previous known-good closure."""
    yield FunctionCommand(_guarded("switch-test", _switch_test), (), {})


# -- gate 5: mark known-good ---------------------------------------------------------------


def pin_script(record: KnownGoodRecord) -> str:
    """GC root first, record second: a record never names an unpinned closure."""
    name = record.name
    pin = f"{PIN_DIR}/{name}"
    data = _q(base64.b64encode(record.to_json().encode()).decode())
    return " && ".join(
        [
            f"mkdir -p {PIN_DIR} {RECORD_DIR} {GCROOT_DIR}",
            f"ln -sfn {_q(record.closure)} {_q(pin)}",
            f"ln -sfn {_q(pin)} {_q(GCROOT_DIR + '/' + name)}",
            f"echo {data} | base64 -d > {_q(RECORD_DIR + '/.' + name + '.tmp')}",
            f"mv {_q(RECORD_DIR + '/.' + name + '.tmp')} {_q(RECORD_DIR + '/' + name + '.json')}",
            # the record and the links reach the disk (not the whole machine's cache)
            f"sync {_q(RECORD_DIR + '/' + name + '.json')} {RECORD_DIR} {PIN_DIR} {GCROOT_DIR}",
        ]
    )


def prune_script(names: list[str]) -> str:
    parts = [
        "rm -f "
        + " ".join(_q(p) for p in (f"{RECORD_DIR}/{n}.json", f"{GCROOT_DIR}/{n}", f"{PIN_DIR}/{n}"))
        for n in names
    ]
    return " && ".join(parts) if parts else "true"


def _mark(state: Any, host: Any) -> bool:
    run = current_run()
    started = time.monotonic()
    rep = run.host_report(host)
    if run.mode == "dry":
        release_lock(run, host)
        return True
    assert rep.closure
    record = KnownGoodRecord(
        name=record_name(utc_stamp(), rep.closure),
        host=host.name,
        closure=rep.closure,
        commit=run.report.commit,
        dirty=run.report.dirty,
        utc=utc_now().isoformat(),
        kind=run.kind,
        gates={
            g: {"result": r.result, "seconds": r.seconds, "detail": r.detail}
            for g, r in rep.gates.items()
        },
    )
    res = remote(host, f"{pin_script(record)} && ls {RECORD_DIR}")
    if not res.ok:
        return _fail(run, host, "known-good", f"cannot pin: {res.tail()}", started)
    names = [n.removesuffix(".json") for n in res.stdout.split() if n.endswith(".json")]
    doomed = pins_to_prune(names, run.keep_pins)
    if doomed:
        remote(host, prune_script(doomed))
    rep.known_good = record.name
    rep.status = "deployed"
    release_lock(run, host)
    return _pass(
        run,
        host,
        "known-good",
        started,
        f"pinned {record.name}",
        {"record": record.name, "gcroot": f"{GCROOT_DIR}/{record.name}", "pruned": doomed},
    )


@operation(is_idempotent=False)
def mark_known_good() -> Generator[FunctionCommand, None, None]:
    """Gate 5: an indirect GC root and a record on the host; older pins pruned."""
    yield FunctionCommand(_guarded("known-good", _mark), (), {})


# -- rollback: choose the closure ------------------------------------------------------------


def _choose_rollback(state: Any, host: Any) -> bool:
    run = current_run()
    started = time.monotonic()
    rep = run.host_report(host)
    records: list[KnownGoodRecord] = host.get_fact(KnownGoodRecords) or []
    wanted = str(host.data.get("to") or "")
    target: KnownGoodRecord | None = None
    if wanted:
        for rec in reversed(records):
            if wanted in (rec.name, rec.closure, rec.tag or "", rec.commit or ""):
                target = rec
                break
        if target is None:
            return _fail(
                run,
                host,
                "select",
                f"no known-good record matches {wanted!r} "
                f"(records: {', '.join(r.name for r in records) or 'none'})",
                started,
            )
    else:
        distinct = [r for r in reversed(records) if r.closure != rep.previous]
        if not distinct:
            return _fail(
                run, host, "select", "no previous known-good closure on this host", started
            )
        target = distinct[0]
    valid = remote(host, f"nix-store --check-validity {_q(target.closure)}")
    if not valid.ok:
        return _fail(
            run,
            host,
            "select",
            f"known-good closure {target.closure} is not in the store: {valid.tail()}",
            started,
        )
    rep.closure = target.closure
    return _pass(
        run,
        host,
        "select",
        started,
        f"known-good {target.name}: {target.closure}",
        {"record": target.name, "closure": target.closure},
    )


@operation(is_idempotent=False)
def select_known_good() -> Generator[FunctionCommand, None, None]:
    """Rollback: pick the host's previous known-good closure (or ``--data to=``)."""
    yield FunctionCommand(_guarded("select", _choose_rollback), (), {})
