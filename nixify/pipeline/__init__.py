"""The deploy-and-validate pipeline's plain parts: reports, builder choice, pins, locks.

The pyinfra operations in ``operations/`` drive hosts; everything here is plain,
typed Python that unit tests call directly.
"""

from nixify.pipeline.builders import BuilderProbe, assign_builders, parse_builder_probe
from nixify.pipeline.lock import LockHolder, lock_is_stale
from nixify.pipeline.pins import KnownGoodRecord, pins_to_prune, record_name
from nixify.pipeline.report import GATES, GateResult, HostReport, RunReport

__all__ = [
    "GATES",
    "BuilderProbe",
    "GateResult",
    "HostReport",
    "KnownGoodRecord",
    "LockHolder",
    "RunReport",
    "assign_builders",
    "lock_is_stale",
    "parse_builder_probe",
    "pins_to_prune",
    "record_name",
]
