"""The main job: every selected host through the five gates, hosts in parallel.

    pyinfra inventories/lab.py deploy.py [--limit ROLE|HOST]... [--data mode=dry|test|switch|boot]

1. build on a builder (never on the host), copy builder -> host
2. closure diff / root causes against the running system (--data expect=pkg,... for drift)
3. switch-to-configuration dry-activate
   (before it, the host's encrypted secrets are staged for the new system, whose
   own activation decrypts them with the host's SSH host key, as sops-nix does)
4. switch-to-configuration test, then switch (default) or boot, detached on the
   host; a failure returns the host to its previous known-good closure by itself
5. mark known-good: the host is confirmed over a new SSH connection and pins
   itself (a GC root and a record); unconfirmed, it returns by itself

The run is explicit: made from the command line (validated before any
connection by the inventory), handed to every gate, and ended by the last
operation, which writes reports/deploy-<UTC>.json and reports/latest.json,
prints the summary and tags releases.
"""

from pyinfra import state

from nixify.pipeline.options import RunKind
from operations import gates, lifecycle

run = lifecycle.open_run(state, RunKind.DEPLOY)

gates.preflight(run=run, name="nixify: preflight (deploy lock, build policy)")
gates.build(run=run, name="nixify gate 1: remote evaluate + build")
gates.closure_diff(run=run, name="nixify gate 2: closure diff / RCA")
gates.stage_secrets(run=run, name="nixify: secrets (encrypted files staged for activation)")
gates.dry_activate(run=run, name="nixify gate 3: dry-activate")
gates.switch_test(run=run, name="nixify gate 4: switch test")
gates.mark_known_good(run=run, name="nixify gate 5: mark known-good")
lifecycle.end(run=run, name="nixify: end of the run (report, summary, releases)")
