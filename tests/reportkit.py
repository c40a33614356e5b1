"""A realistic deploy run report, built in code: 15 hosts by role like the lab's fleet,
each gate with start time, duration and evidence; one host failed with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nixify.pipeline.report import GATES, GateResult, HostReport, HostStatus, RunReport

FLEET: tuple[tuple[str, str], ...] = (
    ("wsl-dev-1", "wsl_dev"), ("wsl-dev-2", "wsl_dev"), ("wsl-dev-3", "wsl_dev"),
    ("wsl-dev-4", "wsl_dev"), ("laptop-1", "laptop"), ("laptop-2", "laptop"),
    ("laptop-3", "laptop"), ("builder-1", "remote_builder"),
    ("cloud-builder-1", "cloud_builder"), ("nas-1", "nas"), ("nas-2", "nas"),
    ("nas-3", "nas"), ("edge-ml-1", "edge_ml"), ("operator-1", "operator"),
    ("operator-2", "operator"),
)
FAILED_HOST = "nas-2"
FAILED_REASON = "switch-test: unit samba-smbd.service failed to start (exit 4); back on known-good"
T0 = datetime(2026, 11, 30, 4, 15, 2, tzinfo=UTC)


def _store(name: str, seed: int) -> str:
    alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
    h = "".join(alphabet[(seed * 7 + i * 13) % 32] for i in range(32))
    return f"/nix/store/{h}-{name}"


def _diff_evidence(host: str, seed: int) -> dict[str, Any]:
    causes = [
        {
            "derivation": "openssl-3.0.15",
            "package": "openssl",
            "old_drv": _store("openssl-3.0.14.drv", seed),
            "new_drv": _store("openssl-3.0.15.drv", seed + 1),
            "changes": [{"kind": "source", "field": "src", "old": "openssl-3.0.14.tar.gz",
                         "new": "openssl-3.0.15.tar.gz"}],
            "consequences": [_store("openssl-3.0.15", seed + 2),
                             _store(f"nixos-system-{host}", seed + 3)],
            "removes": [_store("openssl-3.0.14", seed + 4)],
        }
    ]
    packages = [{"name": "openssl", "old_versions": ["3.0.14"], "new_versions": ["3.0.15"],
                 "removed_versions": ["3.0.14"], "added_versions": ["3.0.15"],
                 "size_delta": 2048}]
    if host.startswith("nas"):
        causes.append({
            "derivation": "samba-4.20.2",
            "package": "samba",
            "old_drv": _store("samba-4.20.1.drv", seed),
            "new_drv": _store("samba-4.20.2.drv", seed + 5),
            "changes": [{"kind": "env", "field": "version", "old": "4.20.1", "new": "4.20.2"}],
            "consequences": [_store("samba-4.20.2", seed + 6)],
            "removes": [],
        })
        packages.append({"name": "samba", "old_versions": ["4.20.1"],
                         "new_versions": ["4.20.2"], "removed_versions": ["4.20.1"],
                         "added_versions": ["4.20.2"], "size_delta": -512})
    return {
        "counts": {"changed": len(packages), "added": 0, "removed": 0, "size_delta": 1536},
        "diff": {"packages": packages, "added": [], "removed": [], "rebuilt": []},
        "drift": {"ok": True, "unexpected": [], "message": ""},
        "rca": {"causes": causes, "unexplained": [],
                "counts": {"causes": len(causes), "explained_paths": 3,
                           "unexplained_paths": 0}},
    }


def make_report(fleet: tuple[tuple[str, str], ...] = FLEET,
                failed: str | None = FAILED_HOST) -> RunReport:
    """A finished deploy of ``fleet``: every host deployed except ``failed``, which
    failed gate 4 and went back to its known-good system."""
    rep = RunReport(kind="deploy", mode="switch", started=T0.isoformat(),
                    commit="0d8ff78c9a1e4b2f7d3c5a6e8f9b0c1d2e3f4a5b", dirty=False,
                    operator="operator-1", finished=(T0 + timedelta(seconds=95)).isoformat())
    durations = {"build": 31.0, "diff": 2.5, "dry-activate": 1.2, "switch-test": 6.8,
                 "known-good": 0.4}
    for i, (name, role) in enumerate(fleet):
        builder = "cloud-builder-1" if role == "edge_ml" else "builder-1"
        h = HostReport(host=name, role=role, builder=builder,
                       closure=_store(f"nixos-system-{name}-26.12", i + 40),
                       previous=_store(f"nixos-system-{name}-26.11", i + 80),
                       diff={"changed": 1, "added": 0, "removed": 0, "size_delta": 1536})
        at = T0 + timedelta(seconds=1 + (i % 4) * 0.5)
        for g in GATES:
            secs = durations[g] + (i % 5) * 0.3
            evidence: dict[str, Any] = _diff_evidence(name, i) if g == "diff" else {}
            result = "passed"
            detail = "ok"
            if name == failed and g == "switch-test":
                result, detail = "failed", FAILED_REASON
            if name == failed and g == "known-good":
                result, detail = "skipped", "switch test failed"
            h.gate(g, GateResult(result=result, seconds=round(secs, 2), detail=detail,
                                 evidence=evidence, started=at.isoformat()))
            at += timedelta(seconds=secs)
        if name == failed:
            h.fail(HostStatus.ROLLED_BACK, FAILED_REASON)
        else:
            h.status = HostStatus.DEPLOYED
            h.known_good = f"{T0:%Y%m%dT%H%M%SZ}-0d8ff78"
        rep.hosts[name] = h
    return rep


def big_fleet(n: int) -> tuple[tuple[str, str], ...]:
    roles = ("wsl_dev", "laptop", "nas", "operator")
    return tuple((f"{roles[i % 4].replace('_', '-')}-{i}", roles[i % 4]) for i in range(n))
