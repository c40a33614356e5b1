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

Writes reports/deploy-<UTC>.json and reports/latest.json and prints a summary.
"""

from pyinfra import host

from nixify import paths
from operations import gates
from operations.run import start_run
from operations.secrets import deploy_secrets

start_run("deploy", host.data, paths.repo_root())

gates.preflight(name="nixify: preflight (deploy lock, build policy)")
gates.build(name="nixify gate 1: remote evaluate + build")
gates.closure_diff(name="nixify gate 2: closure diff / RCA")
gates.dry_activate(name="nixify gate 3: dry-activate")
gates.switch_test(name="nixify gate 4: switch test")
if host.data.get("mode") != "dry":
    # each host decrypts exactly what it mounts, with its own host key, on the host
    deploy_secrets(name="nixify: secrets (decrypted on the host into /run/secrets)")
gates.mark_known_good(name="nixify gate 5: mark known-good")
