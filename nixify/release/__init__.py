"""Release pointers and the known-good ledger.

A release is an annotated tag ``release/<target>/<UTC>-<shortrev>`` on the exact
validated commit, its message holding the evidence; ``release/<target>`` only
fast-forwards to it. The ledger joins the hosts' known-good records with the tags.
"""

from nixify.release.evidence import HostEvidence, ReleaseEvidence, parse_message
from nixify.release.git import (
    BranchUpdate,
    ReleaseError,
    ReleaseTag,
    advance_branch,
    create_tag,
    list_tags,
)
from nixify.release.ledger import Ledger, LedgerEntry, build_ledger
from nixify.release.names import (
    ReleaseTagName,
    parse_release_tag,
    release_branch,
    release_tag,
)
from nixify.release.plan import ReleasePlan, ReleaseTarget, plan_releases
from nixify.release.publish import ReleaseOutcome, publish

__all__ = [
    "BranchUpdate",
    "HostEvidence",
    "Ledger",
    "LedgerEntry",
    "ReleaseError",
    "ReleaseEvidence",
    "ReleaseOutcome",
    "ReleasePlan",
    "ReleaseTag",
    "ReleaseTagName",
    "ReleaseTarget",
    "advance_branch",
    "build_ledger",
    "create_tag",
    "list_tags",
    "parse_message",
    "parse_release_tag",
    "plan_releases",
    "publish",
    "release_branch",
    "release_tag",
]
