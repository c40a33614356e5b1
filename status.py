"""Fleet status: what runs where, against its known-good pins (read-only).

    pyinfra inventories/lab.py status.py [--limit ...] [--data status_out=PATH]

Normally run through ``nixify status``, which renders the probe with the ledger.
The probe is an explicit run (``operations/status.py``): made before any
connection by the inventory, handed to the probe, ended by the last operation (or
by the connect callback when no host answered). Every selected host is written
out, a host that does not answer as such.
"""

from pyinfra import state

from operations import status

run = status.open_status(state)

status.probe(run=run, name="nixify status: running, booted, known-good pins")
status.end(run=run, name="nixify status: every selected host written out")
