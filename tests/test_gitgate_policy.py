"""The policy script is plain POSIX sh: same answers under dash and bash --posix."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_gitgate_hooks import allowed_signers_line, make_key

from nixify.gitgate.policy import gate_script_path

SHELLS = [s for s in (["dash"], ["bash", "--posix"]) if shutil.which(s[0])]

CASES = [
    (["check-branch", "claude/feat/x"], {}, 0),
    (["check-branch", "claude/wip"], {}, 1),
    (["check-branch", "main"], {}, 1),
    (["check-branch", "main"], {"NIXIFY_ACTOR": "op"}, 0),
    (["check-branch", "op/feat/x"], {"NIXIFY_ACTOR": "codex"}, 1),
    (["check-branch", "release/nas"], {"NIXIFY_ACTOR": "op"}, 0),
    (["check-branch", "release/nas"], {}, 1),
    (["check-branch", "copilot/chore/a.b_c-d/e"], {}, 0),
    (["check-branch", "copilot/chore/a b"], {}, 1),
    (["check-branch", "copilot/chore/"], {}, 1),
    (["check-subject", "docs(readme, leak): x"], {}, 1),
    (["check-subject", "docs(readme,leak): x"], {}, 0),
    (["check-subject", "ci!: drop"], {}, 0),
    (["check-subject", "test(gate) : x"], {}, 1),
    (["check-subject", "perf(leak): faster"], {}, 0),
    (["check-subject", "build: pin nixpkgs"], {}, 0),
    (["check-subject", "style: wrap"], {}, 0),
    (["check-subject", "revert: feat(x): y"], {}, 0),
    (["check-branch", "claude/perf/x"], {}, 0),
    (["check-name", "main"], {"NIXIFY_ACTOR": "claude"}, 0),
    (["check-name", "mallory/feat/x"], {}, 1),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("policy")
    subprocess.run(["git", "init", "-q", str(r)], check=True)
    subprocess.run(["git", "-C", str(r), "config", "nixify.operators", "op"], check=True)
    # "op" is proven by an SSH signing key listed for op in the allowed-signers file.
    key = make_key(r.parent / f"{r.name}-keys", "op")
    signers = r.parent / f"{r.name}-keys" / "allowed_signers"
    signers.write_text(allowed_signers_line("op", key))
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", str(key)),
                 ("gpg.ssh.allowedSignersFile", str(signers))):
        subprocess.run(["git", "-C", str(r), "config", k, v], check=True)
    return r


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: " ".join(s))
@pytest.mark.parametrize(("args", "env", "rc"), CASES)
def test_policy_answers(
    repo: Path, shell: list[str], args: list[str], env: dict[str, str], rc: int
) -> None:
    proc = subprocess.run(
        [*shell, str(gate_script_path()), *args], cwd=repo, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(repo), **env},
    )
    assert proc.returncode == rc, proc.stderr


def test_custom_lists_from_git_config(repo: Path) -> None:
    cfg = ["git", "-C", str(repo), "config"]
    subprocess.run([*cfg, "nixify.agents", "bot1,bot2"], check=True)
    subprocess.run([*cfg, "nixify.types", "feat fix perf"], check=True)
    subprocess.run([*cfg, "nixify.protected", "trunk stable/*"], check=True)
    try:
        def rc(*args: str) -> int:
            return subprocess.run(
                ["sh", str(gate_script_path()), *args], cwd=repo, capture_output=True,
                env={"PATH": "/usr/bin:/bin", "HOME": str(repo)},
            ).returncode

        assert rc("check-branch", "bot2/perf/x") == 0
        assert rc("check-branch", "claude/feat/x") == 1
        assert rc("check-branch", "main") == 1  # not protected now, but not a valid name
        assert rc("check-branch", "stable/1") == 1
        assert rc("check-subject", "perf: faster") == 0
        assert rc("check-subject", "docs: x") == 1
    finally:
        for key in ("nixify.agents", "nixify.types", "nixify.protected"):
            subprocess.run([*cfg, "--unset", key], check=True)
