"""A host's ``secrets`` add to its role's list (inventories/hosts.yaml)."""

from __future__ import annotations

from pathlib import Path

from nixify.inventory import build_fleet, load_fleet

REPO = Path(__file__).resolve().parent.parent
ROLES = {"nas": {"secrets": ["common/ntp.yaml", "nas/restic.yaml"]}}


def test_a_host_s_secrets_add_to_its_role_s() -> None:
    fleet = build_fleet(ROLES, [
        {"name": "nas-1", "role": "nas", "secrets": ["nas/nfs.yaml", "common/ntp.yaml"]},
        {"name": "nas-2", "role": "nas"},
        {"name": "laptop-1", "role": "laptop", "max_jobs": 0, "secrets": ["laptop/wifi.yaml"]},
    ], "t")
    assert fleet["nas-1"].secrets == ("common/ntp.yaml", "nas/restic.yaml", "nas/nfs.yaml")
    assert fleet["nas-2"].secrets == ("common/ntp.yaml", "nas/restic.yaml")
    assert fleet["laptop-1"].secrets == ("laptop/wifi.yaml",)
    # a subset (the lab's) keeps the same rule
    sub = fleet.subset([{"name": "nas-1"}], "lab")
    assert sub["nas-1"].secrets == fleet["nas-1"].secrets


def test_the_fleet_s_nas_1_mounts_its_role_s_files_and_its_own() -> None:
    fleet = load_fleet(REPO / "inventories" / "hosts.yaml")
    assert fleet["nas-1"].secrets == (*fleet["nas-2"].secrets, "nas/nfs-exports.yaml")
