"""`--data` is parsed once, into a typed model: a typo or a bad value stops the run
before any connection, in one line naming the key and what is allowed."""

from __future__ import annotations

import pytest

from nixify.errors import ConfigError
from nixify.inventory.limits import comma_groups
from nixify.pipeline.options import Mode, RunKind, RunOptions, data_pairs, options_from_argv
from nixify.util import parse_flag

DEPLOY = ["pyinfra", "-y", "inventories/lab.py", "deploy.py"]


def refused(*data: str, argv: list[str] = DEPLOY) -> str:
    args = [*argv]
    for d in data:
        args += ["--data", d]
    with pytest.raises(ConfigError) as info:
        options_from_argv(args)
    return str(info.value)


def test_a_typo_in_a_key_is_refused_naming_it_and_the_allowed_keys() -> None:
    msg = refused("mdoe=dry")
    assert msg.startswith("--data mdoe=dry: unknown key 'mdoe'")
    assert "mode" in msg and "keep_pins" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("mode=swtich", ["not a mode", "dry, test, switch, boot"]),
        ("keep_pins=abc", ["keep_pins=abc", "whole number of at least 1"]),
        ("keep_pins=0", ["keep_pins=0", "at least 1"]),
        ("accept_drift=maybe", ["accept_drift=maybe", "yes/no", "true", "off"]),
        ("cache=sometimes", ["cache=sometimes", "yes/no"]),
        ("release=", ["release=", "yes/no"]),
        ("noequals", ["expected key=value"]),
    ],
)
def test_bad_values_are_refused_in_one_line(data: str, words: list[str]) -> None:
    msg = refused(data)
    assert all(w in msg for w in words), msg
    assert "\n" not in msg and "Traceback" not in msg


def test_a_key_of_another_deploy_file_is_refused() -> None:
    assert "applies to rollback.py only" in refused("to=release/nas/x")
    rollback = ["pyinfra", "inventories/lab.py", "rollback.py"]
    assert "applies to deploy.py only" in refused("expect=openssl", argv=rollback)


def test_good_values_are_typed() -> None:
    argv = [*DEPLOY, "--data", "mode=boot", "--data=expect=openssl, samba",
            "--data", "accept_drift=YES", "--data", "keep_pins=7", "--data", "cache=off"]
    opts = options_from_argv(argv)
    assert opts.kind is RunKind.DEPLOY and opts.mode is Mode.BOOT
    assert opts.mode.activates and opts.mode.sets_profile and opts.mode.keeps_running_system
    assert opts.expect == frozenset({"openssl", "samba"})
    assert opts.accept_drift is True and opts.keep_pins == 7 and opts.cache is False
    assert not Mode.DRY.activates and not Mode.TEST.sets_profile
    default = options_from_argv(DEPLOY)
    assert default.mode is Mode.SWITCH and default.keep_pins == 5 and default.release


def test_an_unknown_deploy_file_allows_every_key_but_still_checks_values() -> None:
    opts = RunOptions.parse(data_pairs(["--data", "to=abc1234"]), None)
    assert opts.to == "abc1234"
    with pytest.raises(ConfigError):
        RunOptions.parse({"mode": "swtich"}, None)


def test_one_yes_no_parser() -> None:
    assert parse_flag("On", "x") is True and parse_flag(False, "x") is False
    with pytest.raises(ConfigError, match="x=maybe: not a yes/no value"):
        parse_flag("maybe", "x")


def test_a_comma_limit_becomes_a_group_of_its_own() -> None:
    groups = {"nas": [("nas-1", {"r": 1})], "laptop": [("laptop-1", {}), ("laptop-2", {})],
              "wsl_dev": [("wsl-dev-1", {})]}
    extra = comma_groups(["pyinfra", "--limit", "nas,laptop", "--limit=wsl-*,nas-1"], groups)
    assert [h for h, _ in extra["nas,laptop"]] == ["nas-1", "laptop-1", "laptop-2"]
    assert [h for h, _ in extra["wsl-*,nas-1"]] == ["wsl-dev-1", "nas-1"]
    assert extra["nas,laptop"][0][1] == {"r": 1}
