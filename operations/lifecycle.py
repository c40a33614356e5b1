"""A run's beginning and end, as explicit steps.

* ``begin_run`` (from an inventory file, before any connection): refuse a bad
  ``--limit`` or ``--data`` in one line; register the run on pyinfra's state.
* ``open_run`` (from a deploy file): that run, or one made from the command line
  when the inventory did not begin one.
* ``end_run`` / the ``end`` operation (the deploy file's last operation, or the
  connect callback when no host answered): every selected host accounted for,
  the report written *first*, the summary printed, releases tagged and records
  stamped, then the locks still held released (a dead host keeps its lock, and
  the next run sees it stale).
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pyinfra.api.command import FunctionCommand
from pyinfra.api.operation import operation
from pyinfra.context import ctx_state

from nixify.inventory.limits import check_limits, limit_patterns
from nixify.paths import repo_root
from nixify.pipeline.options import RunKind, RunOptions, kind_of, options_from_argv
from nixify.pipeline.report import utc_now
from operations.build import close_masters
from operations.lock import release_lock
from operations.release import publish_releases
from operations.run import Run, register_on_state, run_of, say


def _new_run(options: RunOptions, state: Any) -> Run:
    """A run, registered on ``state`` as a callback handler."""
    run = Run(options, repo_root(), end_run)
    register_on_state(state, run)
    return run


def begin_run(
    argv: Sequence[str],
    groups: Mapping[str, Sequence[tuple[str, Any]]],
    extra_groups: Sequence[str] = (),
) -> None:
    """From an inventory file, before any connection. Raises ``NixifyError`` naming
    the bad ``--limit`` pattern or ``--data`` key."""
    check_limits(limit_patterns(argv), groups, extra_groups)
    options = options_from_argv(argv)
    if kind_of(argv) not in (RunKind.DEPLOY, RunKind.ROLLBACK):
        return
    if not ctx_state.isset():  # type: ignore[no-untyped-call]
        return
    state = ctx_state.get()  # type: ignore[no-untyped-call]
    if run_of(state) is None:
        _new_run(options, state)


def open_run(state: Any, kind: RunKind) -> Run:
    """The run of this pyinfra process (from a deploy file)."""
    run = run_of(state)
    if run is None:
        options = options_from_argv(sys.argv)
        run = _new_run(options.model_copy(update={"kind": kind}), state)
    return run


def end_run(run: Run, state: Any) -> None:
    """Once per run; never raises (the run is over, the report must be on disk)."""
    if not run.claim_end():
        return
    run.account_for_every_host(state)
    run.report.finished = utc_now().isoformat()
    path: Path | None = None
    try:
        path = run.report.write(run.reports_dir)
    except OSError as exc:
        say("run", f"cannot write the report to {run.reports_dir}: {exc}")
    run.progress.finish(run.report)
    if path is not None:
        print(f"report: {path}", file=sys.stderr, flush=True)
    publish_releases(run, path, state)
    for host in list(run.locked_hosts.values()):
        try:
            release_lock(run, host)
        except Exception as exc:  # a dead host keeps its lock; the next run sees it stale
            say(host.name, f"deploy lock not released: {type(exc).__name__}: {exc}")
    close_masters()
    if state is not None:
        state.failed_hosts.update(
            h
            for h in state.inventory
            if h.name in run.report.hosts and not run.report.hosts[h.name].status.ok
        )


def _end(run: Run) -> Any:
    def body(state: Any, host: Any) -> bool:
        end_run(run, state)
        return True

    return body


@operation(is_idempotent=False)
def end(run: Run) -> Generator[FunctionCommand, None, None]:
    """The end of the run: report, summary, releases, locks (once, for every host)."""
    yield FunctionCommand(_end(run), (), {})
