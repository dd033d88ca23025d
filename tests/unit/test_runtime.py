"""tune_gc: start-up objects frozen out of the collector's sight, a larger youngest generation."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.runtime import tune_gc


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tuning_freezes_what_is_alive_and_raises_the_first_threshold(collector: None) -> None:
    _, gen1, gen2 = gc.get_threshold()
    tune_gc(100_000)
    assert gc.get_threshold() == (100_000, gen1, gen2)
    assert gc.get_freeze_count() > 1000  # the test process's modules, at least


def test_zero_leaves_the_collector_as_python_set_it(collector: None) -> None:
    before = gc.get_threshold(), gc.get_freeze_count()
    tune_gc(0)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
