"""Shared fixtures: the lab (a real multi-host fleet on this machine).

Lab tests are marked ``lab``; they need root, as CI has. Each lab lives in its
own directory and on its own 127.0.x.0/24, so several can run side by side.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from labkit import KEEP, bring_up

from nixify.lab import LabState, control


@pytest.fixture(scope="session")
def lab() -> Iterator[LabState]:
    """The shared 15-host lab. Tests that change hosts use their own lab instead."""
    state = bring_up("shared", 15, os.environ.get("NIXIFY_TEST_LAB_NET", "127.0.9"))
    yield state
    if not KEEP:
        control.down(Path(state.dir))


@pytest.fixture
def make_lab() -> Iterator[Callable[[str, int, str], LabState]]:
    """A private lab for a test that changes hosts; always taken down afterwards."""
    made: list[LabState] = []

    def make(name: str, hosts: int, net: str) -> LabState:
        state = bring_up(name, hosts, net)
        made.append(state)
        return state

    yield make
    for state in made:
        control.down(Path(state.dir))
        shutil.rmtree(state.dir, ignore_errors=True)
