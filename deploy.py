"""The main job: every selected host through the five gates, hosts in parallel.

    pyinfra inventories/lab.py deploy.py [--limit ROLE|HOST]... [--data mode=dry|test|switch|boot]

1. build on a builder (never on the host), copy builder -> host
2. closure diff / root causes against the running system (--data expect=pkg,... for drift)
3. switch-to-configuration dry-activate
4. switch-to-configuration test, then switch (default) or boot; a failed test
   returns the host to its previous known-good closure
   then the host's secrets: uploaded encrypted, decrypted on the host with its
   own SSH host key into /run/secrets (sops/age)
5. mark known-good: a GC root and a record on the host

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
gates.dry_activate(run=run, name="nixify gate 3: dry-activate")
gates.switch_test(run=run, name="nixify gate 4: switch test")
gates.install_secrets(run=run, name="nixify: secrets (decrypted on the host into /run/secrets)")
gates.mark_known_good(run=run, name="nixify gate 5: mark known-good")
lifecycle.end(run=run, name="nixify: end of the run (report, summary, releases)")
