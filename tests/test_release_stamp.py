"""Stamping a host's known-good record with its release tag: the one-round-trip
script, run by a real shell on real record files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from nixify.pipeline.pins import KnownGoodRecord
from operations.release import _stamp_script

TAG = "release/nas/20261130T040000Z-1a2b3c4"


def record(tag: str | None = None) -> KnownGoodRecord:
    return KnownGoodRecord(
        name="20261130T040000Z-abcdefgh", host="nas-1",
        closure="/nix/store/" + "a" * 32 + "-nixos-system-nas-1-26.12",
        commit="c" * 40, dirty=False, utc="2026-11-30T04:00:00+00:00", kind="deploy",
        gates={"build": {"result": "passed", "seconds": 1.0, "detail": 'a "quoted" tag: null,'}},
        tag=tag,
    )


def run(directory: Path, rec: KnownGoodRecord) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", _stamp_script(rec.name, TAG, str(directory))],
                          capture_output=True, text=True)


def test_the_tag_is_stamped_and_nothing_else_changes(tmp_path: Path) -> None:
    rec = record()
    path = tmp_path / f"{rec.name}.json"
    path.write_text(rec.to_json())
    proc = run(tmp_path, rec)
    assert proc.returncode == 0, proc.stderr
    assert path.read_text() == record(TAG).to_json()
    assert KnownGoodRecord.from_json(path.read_text()) == record(TAG)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


def test_a_record_not_as_gate_5_wrote_it_is_left_to_the_general_path(tmp_path: Path) -> None:
    for text in (record(TAG).to_json(),  # already stamped
                 json.dumps(json.loads(record().to_json()))):  # another layout
        rec = record()
        path = tmp_path / f"{rec.name}.json"
        path.write_text(text)
        assert run(tmp_path, rec).returncode == 3
        assert path.read_text() == text


def test_a_missing_record_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    proc = run(tmp_path, record())
    assert proc.returncode not in (0,) and list(tmp_path.iterdir()) == []
