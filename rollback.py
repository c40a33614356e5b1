"""Rollback: redeploy each host's previous known-good closure (no evaluation, no
build) through dry-activate, switch test and known-good.

    pyinfra inventories/lab.py rollback.py [--limit ...] [--data to=RECORD|CLOSURE|TAG]
"""

from pyinfra import host

from nixify import paths
from operations import gates
from operations.run import start_run

start_run("rollback", host.data, paths.repo_root())

gates.preflight(name="nixify: preflight (deploy lock, build policy)")
gates.select_known_good(name="nixify rollback: select the known-good closure")
gates.dry_activate(name="nixify gate 3: dry-activate")
gates.switch_test(name="nixify gate 4: switch test")
gates.mark_known_good(name="nixify gate 5: mark known-good")
