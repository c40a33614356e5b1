"""Gate 2 in one call: version diff, RCA (when derivations are at hand), drift verdict.

The pipeline gathers with pyinfra facts (``closure_query_command`` on the
target for the running system, on the builder for the candidate;
``derivations_query_command`` on the builder) and hands the parsed results to
``closure_gate``, which computes without touching any host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nixify.diff.closure import Closure
from nixify.diff.derivations import DerivationSet, DerivationSource
from nixify.diff.drift import DriftPolicy, DriftVerdict
from nixify.diff.rca import RootCauseReport, explain
from nixify.diff.versions import ClosureDiff, diff_closures


@dataclass(frozen=True)
class GateReport:
    """What gate 2 found for one host: the diff, its RCA and the drift verdict."""

    diff: ClosureDiff
    rca: RootCauseReport | None
    verdict: DriftVerdict

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    def counts(self) -> dict[str, int]:
        out = self.diff.counts()
        if self.rca is not None:
            out["causes"] = len(self.rca.causes)
            out["unexplained"] = len(self.rca.unexplained)
        return out

    def to_json(self) -> dict[str, Any]:
        out = self.diff.to_json()
        out["counts"] = self.counts()
        out["rca"] = self.rca.to_json() if self.rca is not None else None
        out["drift"] = {
            "ok": self.verdict.ok,
            "unexpected": list(self.verdict.unexpected),
            "message": self.verdict.message,
        }
        return out

    def render(self) -> str:
        parts = [self.diff.render()]
        if self.rca is not None:
            parts.append(self.rca.render())
        parts.append(f"Drift: {'ok' if self.ok else 'FAIL'}: {self.verdict.message}\n")
        return "\n".join(parts)


def closure_gate(
    running: Closure,
    candidate: Closure,
    drvs: DerivationSource | None = None,
    policy: DriftPolicy | None = None,
    candidate_drvs: DerivationSource | None = None,
) -> GateReport:
    """Compare the running closure with the candidate and judge the change.

    ``drvs`` holds the derivations (of both, or of the running one when
    ``candidate_drvs`` is given separately); without any, the RCA is skipped and
    the policy judges package names only.
    """
    diff = diff_closures(running, candidate)
    rca = None
    if drvs is not None or candidate_drvs is not None:
        old_set: DerivationSource = drvs if drvs is not None else DerivationSet()
        rca = explain(diff, old_set, candidate_drvs if candidate_drvs is not None else old_set)
    verdict = (policy or DriftPolicy()).check(diff, rca)
    return GateReport(diff, rca, verdict)
