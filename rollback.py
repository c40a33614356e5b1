"""Rollback: redeploy each host's previous known-good closure (no evaluation, no
build) through dry-activate, switch test and known-good.

    pyinfra inventories/lab.py rollback.py [--limit ...] [--data to=RECORD|CLOSURE|TAG|COMMIT]
"""

from pyinfra import state

from nixify.pipeline.options import RunKind
from operations import gates, lifecycle

run = lifecycle.open_run(state, RunKind.ROLLBACK)

gates.preflight(run=run, name="nixify: preflight (deploy lock, build policy)")
gates.select_known_good(run=run, name="nixify rollback: select the known-good closure")
gates.every_host_can_follow(run=run, name="nixify rollback: every targeted host can follow")
gates.dry_activate(run=run, name="nixify gate 3: dry-activate")
gates.switch_test(run=run, name="nixify gate 4: switch test")
gates.mark_known_good(run=run, name="nixify gate 5: mark known-good")
lifecycle.end(run=run, name="nixify: end of the run (report, summary, releases)")
