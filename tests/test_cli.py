"""The dispatcher: every module's commands are reachable, each loads only its own module."""

from __future__ import annotations

import argparse
import sys

import pytest

from nixify import cli


def test_every_fast_command_is_registered_by_its_module() -> None:
    for command, modules in cli.FAST_COMMANDS.items():
        parser = cli.build_parser(modules)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert command in sub.choices, (command, modules)


def _actions(parser: argparse.ArgumentParser, *path: str) -> set[str]:
    for word in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_the_lab_adds_its_set_up_steps_to_other_commands() -> None:
    assert "lab-setup" in _actions(cli.build_parser(cli.FAST_COMMANDS["cache"]), "cache")
    assert "lab-provision" in _actions(
        cli.build_parser(cli.FAST_COMMANDS["secrets"]), "secrets"
    )
    # without the lab module, the subsystems' own commands stand alone
    assert "lab-setup" not in _actions(cli.build_parser(("nixify.cache.cli",)), "cache")


def test_a_command_module_that_fails_to_import_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "nixify_broken_cli", None)  # import raises ImportError
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "nixify_broken_cli"))
    with pytest.raises(ImportError):
        cli.build_parser()
    monkeypatch.setitem(cli.FAST_COMMANDS, "broken", ("nixify_broken_cli",))
    with pytest.raises(ImportError):
        cli.main(["broken"])


def test_every_registered_command_has_a_fast_route() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) <= set(cli.FAST_COMMANDS), set(sub.choices) - set(cli.FAST_COMMANDS)


def test_no_command_is_usage_error(capsys: object) -> None:
    assert cli.main([]) == 2


def test_the_static_index_is_what_the_modules_register() -> None:
    # `nixify --help` prints the index; it must say what the full parser would
    assert cli.index_parser().format_help() == cli.build_parser().format_help()


def test_help_and_a_command_load_only_their_own_modules() -> None:
    import subprocess

    def loaded(*argv: str) -> set[str]:
        code = (
            "import sys\n"
            "from nixify import cli\n"
            "try:\n"
            f"    cli.main({list(argv)!r})\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('\\n'.join(sorted(sys.modules)))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout
        return set(out.split())

    top = loaded("--help")
    subsystems = {m for m in top if m.startswith("nixify.") and m != "nixify.cli"}
    assert subsystems <= {"nixify.errors"}, subsystems
    assert not {"pydantic", "yaml", "pyinfra", "cryptography", "rich"} & top
    diff = loaded("diff", "--help")
    assert "nixify.diff.cli" in diff and "nixify.secrets.cli" not in diff
