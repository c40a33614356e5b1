"""`nixify rollback` and `nixify status`: bad input is refused with a clear message
before pyinfra runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from labkit import REPO

from nixify.cli import main
from nixify.release import create_tag


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    proj = tmp_path / "project"
    shutil.copytree(REPO / "inventories", proj / "inventories",
                    ignore=shutil.ignore_patterns("__pycache__"))
    git(proj, "init", "-q", "-b", "main")
    git(proj, "config", "user.name", "t")
    git(proj, "config", "user.email", "t@example.invalid")
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "chore: fleet")
    monkeypatch.setenv("NIXIFY_REPO", str(proj))
    monkeypatch.delenv("NIXIFY_INVENTORY", raising=False)
    return proj


def test_rollback_to_something_that_is_not_a_release_tag(project: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         ) -> None:
    assert main(["rollback", "--to", "v1.0", "-i", "inventories/lab.py"]) == 2
    assert "--to v1.0: not a release tag (release/<target>/<UTC>-<shortrev>)" in \
        capsys.readouterr().err


def test_rollback_to_a_missing_tag_lists_the_target_s_tags(project: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          ) -> None:
    head = git(project, "rev-parse", "HEAD")
    have = f"release/nas/20261130T040000Z-{head[:7]}"
    create_tag(project, have, head, "evidence\n")
    assert main(["rollback", "--to", "release/nas/20990101T000000Z-abcdef0",
                 "-i", "inventories/lab.py"]) == 2
    err = capsys.readouterr().err
    assert "no such release tag" in err and f"tags of nas: {have}" in err


def test_a_missing_inventory_is_named(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--inventory", "inventories/nope.py"]) == 2
    assert "--inventory inventories/nope.py: no such file" in capsys.readouterr().err


def test_to_and_previous_exclude_each_other(project: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["rollback", "--to", "release/nas/20261130T040000Z-abcdef0", "--previous"])
    assert exc.value.code == 2


def test_a_project_without_status_py_uses_the_shipped_one(project: Path) -> None:
    from nixify.pipeline.cli import _deploy_file

    shipped = Path(_deploy_file(project, "status.py"))
    assert shipped == REPO / "status.py" and shipped.is_file()
    (project / "status.py").write_text("# the project's own\n")
    assert _deploy_file(project, "status.py") == "status.py"
