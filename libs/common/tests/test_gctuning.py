"""The garbage-collector settings applied once a service has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from chorus_common.gctuning import GEN0_THRESHOLD, settle_garbage_collector


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restore_gc")
def test_startup_state_is_frozen_and_the_young_generation_is_larger() -> None:
    _, gen1, gen2 = gc.get_threshold()
    settle_garbage_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (GEN0_THRESHOLD, gen1, gen2)
