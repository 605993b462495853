"""The collector pause around a large message always ends, and never overrides a caller's own `gc.disable()`."""

from __future__ import annotations

import gc

import pytest

from autopilot_sync.client.gc_pause import MIN_ROWS, paused_gc


def test_a_large_message_pauses_the_collector_and_resumes_it_even_on_error() -> None:
    assert gc.isenabled()
    with paused_gc(MIN_ROWS):
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), paused_gc(MIN_ROWS):
        raise ValueError("bad row")
    assert gc.isenabled()


def test_a_small_message_and_a_caller_who_disabled_the_collector_are_left_alone() -> None:
    with paused_gc(MIN_ROWS - 1):
        assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc(MIN_ROWS):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
