"""A non-editable install works: `pip install .` (offline, no deps: they come from
this virtualenv) gives a `nixify` whose commands load, and which finds the deploy
files pyinfra runs (shipped inside the package) outside any checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from labkit import REPO

SOURCES = ("pyproject.toml", "setup.py", "README.md", "deploy.py", "rollback.py",
           "status.py", "nixify", "operations")


def _run(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=cwd, env=env)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc


def test_a_non_editable_install_runs_and_finds_the_deploy_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:  # a clean copy: the build must not see this checkout's egg-info
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(REPO / name, src / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", str(wheels), str(src)])
    wheel = next(wheels.glob("nixify-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    # the dependencies: this virtualenv's site-packages, after the new venv's own (a
    # plain path: its .pth files, the editable nixify among them, are not read)
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .stdout.strip())
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
          "--no-index", "-q", str(wheel)])
    nixify = venv / "bin" / "nixify"
    elsewhere = tmp_path / "elsewhere"  # no checkout here or above
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NIXIFY_REPO", "PYTHONPATH")}
    where = _run([str(py), "-c", "import nixify, operations; print(nixify.__file__, "
                  "operations.__file__)"], cwd=elsewhere, env=env).stdout
    assert str(REPO) not in where and str(site) in where, where
    assert "status" in _run([str(nixify), "--help"], cwd=elsewhere, env=env).stdout
    assert "--rca" in _run([str(nixify), "diff", "--help"], cwd=elsewhere, env=env).stdout
    found = _run([str(py), "-c", "from pathlib import Path; from nixify.paths import "
                  "DEPLOY_FILES, deploy_file; print('\\n'.join(deploy_file(Path('.'), n) "
                  "for n in DEPLOY_FILES))"], cwd=elsewhere, env=env).stdout.split()
    assert len(found) == 3
    for name, path in zip(("deploy.py", "rollback.py", "status.py"), found, strict=True):
        assert Path(path) == site / "nixify" / "deploys" / name, found
        assert Path(path).read_text() == (REPO / name).read_text()
