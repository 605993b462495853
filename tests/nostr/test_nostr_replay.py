"""ReplayGuard: each id once per window, memory bounded, expired ids forgotten."""

from __future__ import annotations

import pytest

from autopilot_sync.nostr import ReplayGuard


def test_an_id_is_accepted_once_within_the_window() -> None:
    guard = ReplayGuard(window=120)
    assert guard.accept("a", now=1000)
    assert not guard.accept("a", now=1000)
    assert not guard.accept("a", now=1119)
    assert guard.accept("b", now=1119)


def test_entries_expire_after_the_window_and_free_their_memory() -> None:
    guard = ReplayGuard(window=120)
    for i in range(50):
        assert guard.accept(f"id{i}", now=1000)
    assert len(guard) == 50
    assert guard.accept("late", now=1120)  # everything from t=1000 expired at 1120
    assert len(guard) == 1
    assert guard.accept("id0", now=1120)  # an expired id is a stranger again (the skew check rejects it anyway)


def test_a_full_guard_refuses_new_ids_rather_than_forgetting_live_ones() -> None:
    guard = ReplayGuard(window=120, max_entries=3)
    assert all(guard.accept(i, now=0) for i in ("a", "b", "c"))
    assert guard.is_full(now=1)
    assert not guard.accept("d", now=1)  # fail closed
    assert not guard.accept("a", now=1)  # and "a" is still remembered
    assert len(guard) == 3
    assert guard.accept("d", now=120)  # room again once the others expire
    assert not guard.is_full(now=120)


def test_the_default_window_covers_a_nip98_events_whole_life() -> None:
    guard = ReplayGuard()
    # an event created 60 s ahead of the server clock stays acceptable until 60 s after its created_at
    assert guard.accept("x", now=0)
    assert not guard.accept("x", now=119)


@pytest.mark.parametrize(("window", "entries"), [(0, 1), (1, 0), (-1, 5)])
def test_nonsense_bounds_are_refused(window: int, entries: int) -> None:
    with pytest.raises(ValueError):
        ReplayGuard(window=window, max_entries=entries)
