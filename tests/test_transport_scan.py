"""Only ``nixify/transport/`` starts ``ssh`` or runs a command on a host.

Every .py file of ``nixify/`` and ``operations/`` is parsed; outside the
transport none may hold an ssh argv or command string (a string that is
``ssh`` as the first word of an argv, a script handed to a call or built as an
f-string that starts with ``ssh ``, ``ssh -...`` or ``exec ssh``, or an ``ssh://``
URI), nor call ``run_shell_command``. Docstrings and messages are prose.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TRANSPORT = REPO / "nixify" / "transport"


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _starts_ssh(text: str) -> bool:
    return text == "ssh" or text.startswith(("ssh ", "ssh\t", "exec ssh "))


def _leading_text(node: ast.AST) -> str | None:
    """The literal text a string expression starts with (f-strings: their first part)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        return _leading_text(node.values[0])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _leading_text(node.left)
    return None


def violations(path: Path, source: str) -> list[str]:
    tree = ast.parse(source, str(path))
    docs = _docstrings(tree)
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if "ssh://" in node.value:
                report(node, f"ssh:// URI {node.value[:40]!r}")
            elif node.value.startswith("ssh -") or "exec ssh " in node.value:
                report(node, f"ssh command string {node.value[:40]!r}")
        elif isinstance(node, ast.List | ast.Tuple) and node.elts:
            first = _leading_text(node.elts[0])
            if first is not None and _starts_ssh(first):
                report(node, "an argv starting with ssh")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "run_shell_command":
                report(node, "run_shell_command")
            if node.args:
                first = _leading_text(node.args[0])
                if first is not None and _starts_ssh(first):
                    report(node, f"{name}() with an ssh command")
                if isinstance(node.args[0], ast.List | ast.Tuple) and node.args[0].elts:
                    head = _leading_text(node.args[0].elts[0])
                    if head is not None and head.rsplit("/", 1)[-1] == "ssh":
                        report(node, f"{name}() with an ssh argv")
        elif isinstance(node, ast.JoinedStr):
            first = _leading_text(node)
            if first is not None and (first.startswith("ssh ") or "ssh://" in first):
                report(node, f"f-string starting {first[:30]!r}")
    return found


def _sources() -> list[Path]:
    files = sorted((REPO / "nixify").rglob("*.py")) + sorted((REPO / "operations").rglob("*.py"))
    return [p for p in files if TRANSPORT not in p.parents]


def test_only_the_transport_starts_ssh() -> None:
    found = [v for p in _sources() for v in violations(p, p.read_text())]
    assert found == [], "ssh started outside nixify/transport:\n" + "\n".join(found)


def test_the_scan_sees_every_way_of_starting_ssh(tmp_path: Path) -> None:
    bad = '''
import subprocess
subprocess.Popen(["ssh", "-F", cfg, host, script])
subprocess.run(["/usr/bin/ssh", host, "true"])
argv = ["ssh", *args]
cmd = f"ssh -F {cfg} {host} true"
env = {"uri": f"ssh://{host}"}
host.run_shell_command(StringCommand("true"))
script = "exec ssh builder nix-build"
'''
    path = REPO / "nixify" / "example_bad.py"
    found = violations(path, bad)
    lines = {int(v.split(":")[1]) for v in found}
    assert lines == {3, 4, 5, 6, 7, 8, 9}, found
    ok = '''
"""ssh://root@host in a docstring is prose."""
REQUIRED = ("sshd", "ssh", "ssh-keygen")
subprocess.run(["ssh-keygen", "-f", key])
builders = "ssh-ng://root@host x86_64-linux"
'''
    assert violations(path, ok) == []


def test_the_transport_itself_is_core() -> None:
    """The transport imports only the standard library, nixify.errors, itself, and
    (the pyinfra adapter) pyinfra's command types."""
    for path in sorted(TRANSPORT.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module
            elif isinstance(node, ast.Import):
                mod = node.names[0].name
            else:
                continue
            top = mod.split(".")[0]
            if top == "nixify":
                assert mod == "nixify.errors" or mod.startswith("nixify.transport"), (path, mod)
            elif top == "pyinfra":
                assert mod == "pyinfra.api.command", (path, mod)
            else:
                assert top in _stdlib(), (path, mod)


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names) | {"__future__"}
