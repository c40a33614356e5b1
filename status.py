"""Fleet status: what runs where, against its known-good pins (read-only).

    pyinfra inventories/lab.py status.py [--limit ...] [--data status_out=PATH]

Normally run through ``nixify status``, which renders the probe with the ledger.
Hosts are probed in parallel; a host that does not answer is listed as such.
"""

from pyinfra import host

from operations.release import probe_status, start_status

start_status(host.data)

probe_status(name="nixify status: running, booted, known-good pins")
