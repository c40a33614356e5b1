"""The dispatcher: every module's commands are reachable, each loads only its own module."""

from __future__ import annotations

import argparse

from nixify import cli


def test_every_fast_command_is_registered_by_its_module() -> None:
    for command, module in cli.FAST_COMMANDS.items():
        assert cli._module_present(module), f"{command}: module {module} is missing"
        parser = cli.build_parser(module)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        assert command in sub.choices, (command, module)


def test_every_registered_command_has_a_fast_route() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) <= set(cli.FAST_COMMANDS), set(sub.choices) - set(cli.FAST_COMMANDS)


def test_no_command_is_usage_error(capsys: object) -> None:
    assert cli.main([]) == 2
