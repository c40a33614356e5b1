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
import json
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
from nixify.errors import ConfigError, NixifyError
from nixify.inventory import ssh_args_from_data
from nixify.nix import is_store_path
from nixify.pipeline.activation import ActivationOutcome, activation_script, job_dir, parse_outcome
from nixify.pipeline.pins import (
    GCROOT_DIR,
    PIN_DIR,
    RECORD_DIR,
    KnownGoodRecord,
    activation_order,
    plan_pin,
    previous_record,
    record_name,
)
from nixify.pipeline.plan import check_planned
from nixify.pipeline.report import GateOutcome, GateResult, HostStatus, utc_now, utc_stamp
from nixify.transport import HostUnreachable, PyinfraTransport, SshTransport, Transport
from operations.build import BuildCoordinator
from operations.facts import DeployFacts, DeployState, KnownGoodRecords
from operations.lock import acquire_lock, release_lock
from operations.remote import Remote, quote_argv
from operations.remote import run as remote
from operations.run import Run
from operations.secrets import host_key_check, stage_scripts, unstage_script

SWITCH = "bin/switch-to-configuration"
PROFILE = "/nix/var/nix/profiles/system"

Gate = Callable[[Run, Any, Any], bool]


def _q(value: str) -> str:
    return shlex.quote(value)


def _coordinator(run: Run) -> BuildCoordinator:
    if run.builds is None:
        run.builds = BuildCoordinator(
            run.fleet_dir, run.say, run.repo, run.options, run.active
        )
    assert isinstance(run.builds, BuildCoordinator)
    return run.builds


def _fail(
    run: Run,
    host: Any,
    gate: str,
    reason: str,
    started: float,
    status: HostStatus = HostStatus.FAILED,
    evidence: dict[str, Any] | None = None,
) -> bool:
    rep = run.host_report(host)
    rep.gate(
        gate,
        GateResult(
            result=GateOutcome.SKIPPED if status is HostStatus.SKIPPED else GateOutcome.FAILED,
            seconds=round(time.monotonic() - started, 3),
            detail=reason,
            evidence=evidence or {},
            started=_iso_ago(started),
        ),
    )
    run.progress.gate_done(host.name, gate,
                           "skipped" if status is HostStatus.SKIPPED else "failed")
    if rep.status is not HostStatus.ROLLED_BACK:
        rep.fail(status, f"gate {gate}: {reason}")
    run.say(host.name, f"gate {gate}: {status.value.upper()}: {reason}")
    release_lock(run, host)
    return False


def _iso_ago(started: float) -> str:
    """The UTC wall-clock time of the monotonic instant ``started``."""
    from datetime import timedelta

    return (utc_now() - timedelta(seconds=time.monotonic() - started)).isoformat()


def _pass(
    run: Run,
    host: Any,
    gate: str,
    started: float,
    detail: str = "",
    evidence: dict[str, Any] | None = None,
) -> bool:
    seconds = round(time.monotonic() - started, 3)
    run.progress.gate_done(host.name, gate, "passed")
    run.host_report(host).gate(
        gate,
        GateResult(
            result=GateOutcome.PASSED,
            seconds=seconds,
            detail=detail,
            evidence=evidence or {},
            started=_iso_ago(started),
        ),
    )
    run.say(host.name, f"gate {gate}: passed ({seconds:.2f}s){': ' + detail if detail else ''}")
    return True


def _guarded(run: Run, gate: str, body: Gate) -> Callable[[Any, Any], bool]:
    """The gate as a pyinfra command: skipped for a host already out of the run; an
    error inside it is that host's failure at this gate (a host that stops
    answering is ``unreachable`` at it), never the run's. pyinfra always sees
    success, so that it never stops the run; the run's report holds the truth."""

    def wrapped(state: Any, host: Any) -> bool:
        if not run.active(host):
            return True
        run.start_progress(state)
        run.progress.gate_started(host.name, gate)
        started = time.monotonic()
        try:
            body(run, state, host)
            if run.active(host) and gate not in run.host_report(host).gates:
                # a gate with nothing to do for this host (dry mode, no secrets, ...)
                run.progress.gate_done(host.name, gate,
                                       "passed" if gate == "preflight" else "skipped")
        except HostUnreachable as exc:
            _fail(run, host, gate, f"unreachable at gate {gate}: {exc}", started,
                  HostStatus.UNREACHABLE)
        except (NixifyError, OSError, ValueError) as exc:
            _fail(run, host, gate, str(exc), started)
        except BaseException as exc:  # a gate never ends without a reason
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            if _connection_lost(exc):
                _fail(run, host, gate, f"unreachable at gate {gate}: "
                      f"{type(exc).__name__}: {exc}", started, HostStatus.UNREACHABLE)
            else:
                _fail(run, host, gate, f"internal error: {type(exc).__name__}: {exc}", started)
        return True

    return wrapped


def _connection_lost(exc: BaseException) -> bool:
    """paramiko's and gevent's ways of saying the host went away."""
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"EOFError", "SSHException", "NoValidConnectionsError", "Timeout",
                         "socket.timeout", "ConnectionError", "TimeoutError"})


def _switch(host: Any, closure: str, action: str) -> Remote:
    return remote(host, f"{_q(closure + '/' + SWITCH)} {action}")


# -- preflight ---------------------------------------------------------------------------


def _preflight(run: Run, state: Any, host: Any) -> bool:
    started = time.monotonic()
    rep = run.host_report(host)
    facts: DeployFacts | None = host.get_fact(DeployState)
    if facts is None:
        return _fail(run, host, "preflight", "cannot read the host's state", started)
    rep.previous = facts.running if is_store_path(facts.running) else None
    run.records[host.name] = facts.records
    for skipped in facts.records.skipped:
        run.say(host.name, f"warning: skipped an unreadable known-good record: {skipped}")
    if facts.deriver.endswith(".drv"):
        _coordinator(run).previous_drvs[host.name] = facts.deriver
    if facts.activating:
        # an earlier run's activation still runs (its operator may be gone): it ends by
        # itself (confirmed, or back on known-good), so wait for it, then read afresh
        job = json.loads(facts.activating).get("job", "")
        run.say(host.name, f"waiting for an earlier run's activation ({job}) to end")
        PyinfraTransport(host).wait_detached(job, timeout=run.confirm_timeout + 60, poll=0.5)
        again = remote(host, "readlink -f /run/current-system")
        rep.previous = again.stdout.strip() if is_store_path(again.stdout.strip()) else None
        run.records[host.name] = host.get_fact(KnownGoodRecords)
    if host.data.get("constrained"):
        max_jobs = facts.max_jobs or "unknown"
        if max_jobs != "0":
            return _fail(
                run,
                host,
                "preflight",
                f"refused: a constrained host must never build, but its Nix has "
                f"max-jobs = {max_jobs}",
                started,
            )
    why = acquire_lock(run, host) if run.mode.takes_lock else None
    if why is not None:
        return _fail(run, host, "preflight", f"refused: {why}", started)
    return True


@operation(is_idempotent=False)
def preflight(run: Run) -> Generator[FunctionCommand, None, None]:
    """Take the host's deploy lock; refuse a constrained host whose Nix could build."""
    yield FunctionCommand(_guarded(run, "preflight", _preflight), (), {})


# -- gate 1: remote evaluate + build -------------------------------------------------------


def _build(run: Run, state: Any, host: Any) -> bool:
    started = time.monotonic()
    outcome = _coordinator(run).outcome(state, host)
    rep = run.host_report(host)
    rep.builder = outcome.builder
    if outcome.skipped:
        return _fail(
            run, host, "build", outcome.error or "skipped", started, HostStatus.SKIPPED
        )
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
def build(run: Run) -> Generator[FunctionCommand, None, None]:
    """Gate 1: evaluate and build on a builder, copy the closure builder -> host."""
    yield FunctionCommand(_guarded(run, "build", _build), (), {})


# -- gate 2: closure diff / RCA ----------------------------------------------------------


def _rca(run: Run, diff: Any, builder: str | None) -> RootCauseReport | None:
    """Root causes from the derivations the builder sent with its build (no extra trip)."""
    drvs = _coordinator(run).derivations.get(builder or "")
    return explain(diff, drvs) if drvs is not None else None


def _diff(run: Run, state: Any, host: Any) -> bool:
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
def closure_diff(run: Run) -> Generator[FunctionCommand, None, None]:
    """Gate 2: the version diff and root causes against the running system."""
    yield FunctionCommand(_guarded(run, "diff", _diff), (), {})


# -- gate 3: dry-activate ----------------------------------------------------------------


def _dry_activate(run: Run, state: Any, host: Any) -> bool:
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
    if not run.mode.activates:
        rep.status = HostStatus.DRY_RUN
        release_lock(run, host)
    return ok


@operation(is_idempotent=False)
def dry_activate(run: Run) -> Generator[FunctionCommand, None, None]:
    """Gate 3: ``switch-to-configuration dry-activate``."""
    yield FunctionCommand(_guarded(run, "dry-activate", _dry_activate), (), {})


# -- gate 4: switch test, then switch or boot ----------------------------------------------


def _last_known_good(run: Run, host: Any, besides: str) -> str | None:
    """The newest known-good closure of the host other than ``besides``."""
    for rec in sorted(run.records.get(host.name, []), key=activation_order, reverse=True):
        if rec.closure != besides:
            return str(rec.closure)
    return None


def _job_name(run: Run, closure: str) -> str:
    return f"activate-{run.lock.token}-{closure.removeprefix('/nix/store/')[:12]}"


def _reattach(host: Any) -> Transport:
    """A new OpenSSH connection to the host (its pyinfra connection is gone)."""
    return SshTransport(host.name, ssh_args_from_data(host.name, host.data), multiplex=False)


def _await_job(
    run: Run, host: Any, job: str, until: tuple[str, ...], timeout: float
) -> tuple[str, Transport]:
    """Poll the host's activation job until its state is one of ``until`` (over the
    pyinfra connection, then over new ones if that one is lost). Raises
    ``HostUnreachable`` when the host does not answer for ``timeout`` seconds."""
    transport: Transport = PyinfraTransport(host)
    deadline = time.monotonic() + timeout
    delay = 0.02
    path = f"{job_dir(job)}/state"
    lost_since: float | None = None
    while True:
        try:
            state = (transport.read_file(path) or b"").decode().strip()
            lost_since = None
            if state in until:
                return state, transport
        except HostUnreachable:
            # the job runs on without us; a host gone for longer than its dead-man
            # switch has returned by itself (or is down): report it unreachable
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > run.confirm_timeout + 15:
                raise
            transport = _reattach(host)
        if time.monotonic() > deadline:
            raise HostUnreachable(host.name, f"activation job {job}",
                                  f"no outcome within {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _job_outcome(run: Run, host: Any, job: str, timeout: float) -> ActivationOutcome:
    _state, transport = _await_job(run, host, job, ("done",), timeout)
    out = transport.wait_detached(job, timeout=timeout, poll=0.05)
    return parse_outcome(out.log, out.rc)


def _ended_activation(run: Run, host: Any, started: float, outcome: ActivationOutcome,
                      gate: str) -> bool:
    """The host's job ended without staying on the new system: where it is now."""
    rep = run.host_report(host)
    evidence = outcome.evidence()
    what = ", ".join(f"{k} exit {v}" for k, v in outcome.steps.items()) or outcome.result
    if outcome.returned:
        rep.fail(HostStatus.ROLLED_BACK,
                 f"gate {gate}: {outcome.result}: {what}; back on known-good {outcome.running}")
        return _fail(run, host, gate,
                     f"{outcome.result} ({what}); the host returned to {outcome.running}",
                     started, evidence=evidence)
    return _fail(run, host, gate,
                 f"{outcome.result} ({what}); the host runs {outcome.running or 'unknown'} "
                 f"with profile {outcome.profile or 'unknown'}: {outcome.log[-300:]}",
                 started, evidence=evidence)


def _switch_test(run: Run, state: Any, host: Any) -> bool:
    """Gate 4: one detached job on the host (``nixify.pipeline.activation``): test,
    then switch or boot by mode; on failure it returns to known-good by itself.
    The gate passes when the host waits, armed, for its confirmation (gate 5)."""
    started = time.monotonic()
    rep = run.host_report(host)
    if not run.mode.activates:
        return True
    new = rep.closure
    assert new
    if run.planned is not None:
        why = check_planned(run.planned, host.name, new)
        if why is not None:
            return _fail(run, host, "switch-test", f"refused by the plan: {why}", started)
    back = _last_known_good(run, host, new) or rep.previous
    job = _job_name(run, new)
    timeout = run.activation_timeout
    PyinfraTransport(host).start_detached(
        job, activation_script(new, back, run.mode, run.lock.token, job, run.confirm_timeout)
    )
    run.activations[host.name] = job
    state_now, _ = _await_job(run, host, job, ("awaiting-confirmation", "done"), timeout)
    if state_now == "done":
        outcome = _job_outcome(run, host, job, timeout)
        if not outcome.stayed:
            return _ended_activation(run, host, started, outcome, "switch-test")
        return _pass(run, host, "switch-test", started, f"test ok, then {run.mode.value}",
                     outcome.evidence())
    # confirmed at once over a new SSH connection: the proof that the new system
    # still lets the operator in; the confirmation is the pin the host then writes
    seconds = round(time.monotonic() - started, 3)
    record, remove, script = _pin_plan(run, host, {"switch-test": {
        "result": "passed", "seconds": seconds, "detail": f"test ok, then {run.mode.value}"}})
    confirmed_at = time.monotonic()
    _reattach(host).write_file(f"{job_dir(job)}/confirm", script.encode(), 0o600)
    run.pins[host.name] = (record, remove)
    return _pass(run, host, "switch-test", started,
                 f"test ok, then {run.mode.value}; confirmed over a new connection",
                 {"job": job, "back": back,
                  "confirmed_after": round(confirmed_at - started, 3)})


@operation(is_idempotent=False)
def switch_test(run: Run) -> Generator[FunctionCommand, None, None]:
    """Gate 4: ``switch-to-configuration test``; then ``switch`` or ``boot`` by mode,
    detached on the host; a failure returns the host to its known-good closure."""
    yield FunctionCommand(_guarded(run, "switch-test", _switch_test), (), {})


# -- secrets: staged for the new closure before gate 3 ----------------------------------------


def _stage_secrets(run: Run, state: Any, host: Any) -> bool:
    """The host's encrypted files (and their manifest) staged for the new closure, whose
    own activation decrypts them with the host's key before units start (sops-nix's
    way); gate 3 proves they decrypt. A host whose key is not the recorded one, or
    whose files are not keyed to it, fails here, naming the files to rekey."""
    started = time.monotonic()
    mounts = [str(m) for m in (host.data.get("secrets") or [])]
    rep = run.host_report(host)
    if not mounts or rep.closure is None:
        return True
    sdir = str(run.options.secrets_dir or host.data.get("secrets_dir") or run.repo / "secrets")
    try:
        problems = host_key_check(sdir, mounts)
    except ConfigError as exc:
        problems = [str(exc)]
    if problems:
        return _fail(run, host, "secrets", "; ".join(problems), started)
    for script in stage_scripts(host.name, sdir, mounts, rep.closure):
        res = remote(host, script)
        if not res.ok:
            return _fail(run, host, "secrets",
                         f"staging the encrypted files failed: exit {res.rc}: {res.tail(2)}",
                         started)
        if res.stdout.strip() == "unchanged":
            break
    return _pass(run, host, "secrets", started,
                 f"{len(mounts)} encrypted file(s) staged for {rep.closure}")


@operation(is_idempotent=False)
def stage_secrets(run: Run) -> Generator[FunctionCommand, None, None]:
    """Secrets: the encrypted files staged for the new system's activation."""
    yield FunctionCommand(_guarded(run, "secrets", _stage_secrets), (), {})


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


def _known_good_record(run: Run, host: Any) -> KnownGoodRecord:
    """The record gate 5 writes. A deploy pins a new point in history; a rollback
    restores one: the record it returned to keeps its place, its commit and its
    release tag (``to=<commit>`` finds the release, not the time of the rollback)."""
    rep = run.host_report(host)
    assert rep.closure
    gates = {
        g: {"result": r.result.value, "seconds": r.seconds, "detail": r.detail}
        for g, r in rep.gates.items()
    }
    now = utc_now().isoformat()
    if "select" in rep.gates:
        chosen = rep.gates["select"].evidence.get("record")
        for rec in run.records.get(host.name, []):
            if rec.name == chosen and rec.closure == rep.closure:
                return rec.model_copy(update={"restored_at": now})
    return KnownGoodRecord(
        name=record_name(utc_stamp(), rep.closure),
        host=host.name,
        closure=rep.closure,
        commit=run.report.commit,
        dirty=run.report.dirty,
        utc=now,
        kind=run.kind.value,
        gates=gates,
    )


def _pin_plan(
    run: Run, host: Any, extra_gates: dict[str, Any] | None = None
) -> tuple[KnownGoodRecord, list[str], str]:
    """The record to pin, the records it retires, and the script that does both (GC
    root first, record second; then the old pins and their staged secrets go)."""
    existing = run.records.get(host.name, [])
    record = _known_good_record(run, host)
    if extra_gates:
        record = record.model_copy(update={"gates": {**record.gates, **extra_gates}})
    record, remove = plan_pin(existing, record, run.keep_pins, run.live_tags())
    gone = {r.closure for r in existing if r.name in remove} - {
        r.closure for r in existing if r.name not in remove} - {record.closure}
    script = f"{pin_script(record)} && {prune_script(remove)} && {unstage_script(sorted(gone))}"
    return record, remove, script


def _mark(run: Run, state: Any, host: Any) -> bool:
    """Gate 5. An armed host was confirmed at the end of gate 4 and pins itself: read
    its outcome (a pin exists exactly when the host stays on the new system). A
    host in ``boot`` mode (never armed) is pinned here directly."""
    started = time.monotonic()
    rep = run.host_report(host)
    if not run.mode.activates:
        release_lock(run, host)
        return True
    job = run.activations.get(host.name)
    if host.name in run.pins and job is not None:
        record, remove = run.pins[host.name]
        outcome = _job_outcome(run, host, job, run.activation_timeout)
        evidence: dict[str, Any] = {"record": record.name,
                                    "gcroot": f"{GCROOT_DIR}/{record.name}", "pruned": remove}
        evidence.update(outcome.evidence())
        if outcome.result != "confirmed":
            return _ended_activation(run, host, started, outcome, "known-good")
    else:
        record, remove, script = _pin_plan(run, host)
        evidence = {"record": record.name, "gcroot": f"{GCROOT_DIR}/{record.name}",
                    "pruned": remove}
        res = remote(host, script)
        if not res.ok:
            return _fail(run, host, "known-good", f"cannot pin: exit {res.rc}: {res.tail()}",
                         started)
    rep.known_good = record.name
    rep.status = HostStatus.DEPLOYED
    release_lock(run, host)
    return _pass(
        run,
        host,
        "known-good",
        started,
        f"pinned {record.name}" + (f" ({record.tag})" if record.tag else ""),
        evidence,
    )


@operation(is_idempotent=False)
def mark_known_good(run: Run) -> Generator[FunctionCommand, None, None]:
    """Gate 5: an indirect GC root and a record on the host; older pins pruned."""
    yield FunctionCommand(_guarded(run, "known-good", _mark), (), {})


# -- rollback: choose the closure ------------------------------------------------------------


def _record_matches(rec: KnownGoodRecord, wanted: str) -> bool:
    """``to=``: a record name, a closure, a release tag, or a commit (full or an
    abbreviation of at least 7 hex digits)."""
    if wanted in (rec.name, rec.closure, rec.tag or ""):
        return True
    commit = rec.commit or ""
    return len(wanted) >= 7 and all(c in "0123456789abcdef" for c in wanted) and (
        commit.startswith(wanted)
    )


def _choose_rollback(run: Run, state: Any, host: Any) -> bool:
    started = time.monotonic()
    rep = run.host_report(host)
    records = run.records.get(host.name, [])  # read at preflight, unreadable ones named
    wanted = run.options.to or ""
    target: KnownGoodRecord | None = None
    if wanted:
        for rec in reversed(records):
            if _record_matches(rec, wanted):
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
        target = previous_record(records, rep.previous)
        if target is None:
            return _fail(
                run, host, "select", "no earlier known-good closure on this host", started
            )
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
    provenance = ""
    if target.dirty:
        provenance = f" (pinned from a dirty tree at {(target.commit or '?')[:12]})"
        run.say(host.name, f"warning: the rollback target {target.name} was{provenance[1:-1]}")
    return _pass(
        run,
        host,
        "select",
        started,
        f"known-good {target.name}: {target.closure}{provenance}",
        {
            "record": target.name,
            "closure": target.closure,
            "commit": target.commit,
            "dirty": target.dirty,
            "tag": target.tag,
            "utc": target.utc,
        },
    )


@operation(is_idempotent=False)
def select_known_good(run: Run) -> Generator[FunctionCommand, None, None]:
    """Rollback: pick the host's previous known-good closure (or ``--data to=``)."""
    yield FunctionCommand(_guarded(run, "select", _choose_rollback), (), {})


def _every_host_can_follow(run: Run, state: Any, host: Any) -> bool:
    """``rollback --to``: if any targeted host cannot follow, none changes (a role is
    never split across two releases)."""
    if not run.options.to:
        return True
    started = time.monotonic()
    stuck = sorted(
        name for name, rep in run.report.hosts.items()
        if "select" in rep.gates and rep.gates["select"].result != GateOutcome.PASSED
    )
    if stuck:
        return _fail(
            run, host, "select",
            f"not rolled back: {', '.join(stuck)} cannot follow to {run.options.to!r}; "
            "no host changes unless all can", started, HostStatus.SKIPPED,
        )
    return True


@operation(is_idempotent=False)
def every_host_can_follow(run: Run) -> Generator[FunctionCommand, None, None]:
    """Rollback: every targeted host has the target, or none changes."""
    yield FunctionCommand(_guarded(run, "select", _every_host_can_follow), (), {})


