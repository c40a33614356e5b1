"""Gathering split from computing: the commands a pyinfra fact runs, and their parsers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from diff_fixtures.nixbuild import build

from nixify.diff import closure_query_command, parse_closure_query, query_closure
from nixify.diff.derivations import (
    derivations_query_command,
    parse_derivations,
    query_derivations,
)
from nixify.errors import ConfigError
from nixify.nix import LocalRunner

H = "/nix/store/" + "a" * 32
ROOT = f"{H}-system"


def test_closure_command_shapes() -> None:
    argv = closure_query_command(ROOT)
    assert argv[0] == "nix" and argv[-3:] == ["--json", "--recursive", ROOT]
    assert "--offline" in argv  # a missing path never asks a substituter
    link = closure_query_command("/run/current-system")
    assert link[:2] == ["sh", "-c"] and link[-1] == "/run/current-system"
    with pytest.raises(ConfigError, match="relative/path"):
        closure_query_command("relative/path")


def test_parse_closure_query() -> None:
    text = json.dumps(
        [
            {
                "path": ROOT,
                "narSize": 10,
                "references": [f"{H}-lib-1.0"],
                "deriver": f"{H}-system.drv",
            },
            {"path": f"{H}-lib-1.0", "narSize": 5, "references": []},
        ]
    )
    c = parse_closure_query(text, ROOT, "host-a")
    assert len(c) == 2 and c.nar_size == 15 and c.source == "host-a"
    assert c.paths[ROOT].deriver == f"{H}-system.drv" and c.paths[f"{H}-lib-1.0"].deriver is None
    # A resolved link: the store path comes first, on a line of its own.
    assert parse_closure_query(f"{ROOT}\n{text}", "/run/current-system").root == ROOT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "host-a: closure of .*system: `nix path-info` output is not JSON"),
        ('{"a": 1}', "expected a JSON list"),
        (json.dumps([{"path": ROOT, "valid": False}]), "system is not valid in the store"),
        (json.dumps([{"path": f"{H}-other", "narSize": 1}]), "system is not in the closure"),
        ("/etc\n[]", "/run/current-system is not a Nix store path \\(resolves to /etc\\)"),
    ],
)
def test_parse_closure_query_rejects(text: str, message: str) -> None:
    root = "/run/current-system" if text.startswith("/") else ROOT
    with pytest.raises(ConfigError, match=message):
        parse_closure_query(text, root, "host-a")


def test_query_closure_through_a_link(tmp_path: Path) -> None:
    root = build([{"name": "linked-1.0"}])
    link = tmp_path / "current-system"
    link.symlink_to(root)
    c = query_closure(LocalRunner(), str(link))
    assert c.root == root and len(c) == 2
    with pytest.raises(ConfigError, match=f"local: {tmp_path}/absent does not exist"):
        query_closure(LocalRunner(), str(tmp_path / "absent"))
    (tmp_path / "etc").symlink_to("/etc")
    with pytest.raises(ConfigError, match="is not a Nix store path \\(resolves to /etc\\)"):
        query_closure(LocalRunner(), str(tmp_path / "etc"))


def test_derivations_query_and_parse() -> None:
    root = build([{"name": "drvq-1.0", "env": {"TAG": str(os.getpid())}}])
    drv = query_closure(LocalRunner(), root).paths[root].deriver
    assert drv is not None
    gone = f"{H}-gone.drv"
    argv = derivations_query_command([drv, gone, drv])
    assert argv.count(drv) == 1  # asked once
    drvs = query_derivations(LocalRunner(), [drv, gone])
    assert drvs.missing == {gone}
    d = drvs.drvs[drv]
    assert d.name == "system" and d.outputs == {"out": root}
    (inp,) = d.input_drvs
    assert drvs.drvs[inp].env["TAG"] == str(os.getpid())
    with pytest.raises(ConfigError, match="not a store derivation"):
        derivations_query_command([root])
    with pytest.raises(ConfigError, match="host-b: `nix show-derivation` output is not JSON"):
        parse_derivations("missing\tx\n--- nixify derivations ---\nnope", "host-b")
