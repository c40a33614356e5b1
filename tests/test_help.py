"""`--help` of the commands nixify's status, rollback, diff and secrets subsystems
register: every option documented, one name for one thing, no reStructuredText."""

from __future__ import annotations

import argparse

import pytest

from nixify.cli import build_parser

COMMANDS = ("status", "rollback", "diff", "secrets", "ssh-to-age")


def parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    out: list[tuple[str, argparse.ArgumentParser]] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        out.append((path, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")

    root = build_parser()
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name in COMMANDS:
                walk(action.choices[name], f"nixify {name}")
    return out


@pytest.mark.parametrize("path,parser", parsers(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_option_is_documented_without_rst(path: str,
                                                parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.dest == "help":
            continue
        if action.help == argparse.SUPPRESS:
            continue
        assert action.help, f"{path}: {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    assert "``" not in text and ":func:" not in text and ":class:" not in text, path


def test_one_name_for_one_thing() -> None:
    visible: dict[str, set[str]] = {}
    for _path, parser in parsers():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for opt in action.option_strings:
                visible.setdefault(opt, set()).add(action.dest)
    assert "-i" not in visible  # it meant an inventory here and an input file there
    assert visible["--inventory"] == {"inventory"}
    assert "--hosts-file" in visible


def test_old_spellings_still_work() -> None:
    parser = build_parser()
    args = parser.parse_args(["status", "-i", "inventories/lab.py"])
    assert args.inventory == "inventories/lab.py"
    args = parser.parse_args(["secrets", "check", "--inventory", "h.yaml"])
    assert args.inventory == "h.yaml"
    args = parser.parse_args(["ssh-to-age", "-i", "k.pub"])
    assert args.input == "k.pub"
