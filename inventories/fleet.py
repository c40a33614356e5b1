"""The real fleet, by role. No addresses here: they come from a private map
outside git ($NIXIFY_ADDRESSES, or the sops-encrypted secrets/addresses.sops.yaml).
Every host's data is validated when this file loads, before any connection."""

import sys
from pathlib import Path

from pyinfra.api.exceptions import InventoryError

from nixify.errors import NixifyError
from nixify.inventory import fleet_groups
from nixify.inventory.limits import comma_groups
from nixify.secrets.sopsfile import decrypt_file
from operations.lifecycle import begin_run
from operations.status import begin_status

try:
    _groups = fleet_groups(Path(__file__).parent / "hosts.yaml", decrypt=decrypt_file)
    begin_run(sys.argv, _groups, ("all", "fleet"))
    begin_status(sys.argv)
except NixifyError as _exc:
    raise InventoryError(f"{__file__}: {_exc}") from None

wsl_dev = _groups["wsl_dev"]
laptop = _groups["laptop"]
remote_builder = _groups["remote_builder"]
cloud_builder = _groups["cloud_builder"]
nas = _groups["nas"]
edge_ml = _groups["edge_ml"]
operator = _groups["operator"]
# `--limit nas,laptop` (the Ansible habit) as a group of its own
globals().update(comma_groups(sys.argv, _groups))
