"""ReplayGuard: each id once while it could still verify, memory bounded in total and per key."""

from __future__ import annotations

import pytest

from autopilot_sync.nostr import ReplayGuard
from autopilot_sync.nostr.replay import Admission


def test_an_id_is_accepted_once_while_it_is_usable() -> None:
    guard = ReplayGuard()
    assert guard.admit("a", key="k", usable_until=1060, now=1000) is Admission.ACCEPTED
    assert guard.admit("a", key="k", usable_until=1060, now=1000) is Admission.REPLAYED
    assert guard.admit("a", key="k", usable_until=1060, now=1060) is Admission.REPLAYED  # last acceptable second
    assert guard.seen("a", now=1060)
    assert not guard.seen("a", now=1061)  # too old for the skew check now: forgotten
    assert len(guard) == 0 and guard.held_by("k") == 0


def test_a_proof_created_in_the_future_is_remembered_until_its_created_at_plus_the_skew() -> None:
    guard = ReplayGuard()
    created_at, skew, first_use = 1060, 60, 1000  # created 60 s ahead of the server clock
    assert guard.admit("f", key="k", usable_until=created_at + skew, now=first_use) is Admission.ACCEPTED
    # Under a 120 s window counted from first use it would be forgotten at 1120 although it verifies until 1120.
    assert guard.admit("f", key="k", usable_until=created_at + skew, now=first_use + 120) is Admission.REPLAYED


def test_one_key_cannot_fill_the_memory_for_everyone() -> None:
    guard = ReplayGuard(max_entries=100, per_key_entries=5)
    for i in range(5):
        assert guard.admit(f"m{i}", key="mallory", usable_until=60, now=0) is Admission.ACCEPTED
    assert guard.admit("m5", key="mallory", usable_until=60, now=0) is Admission.KEY_FULL
    assert guard.admit("a0", key="alice", usable_until=60, now=0) is Admission.ACCEPTED
    assert guard.held_by("mallory") == 5 and guard.held_by("alice") == 1
    assert guard.admit("m5", key="mallory", usable_until=200, now=61) is Admission.ACCEPTED  # share freed


def test_a_full_guard_refuses_new_ids_rather_than_forgetting_live_ones() -> None:
    guard = ReplayGuard(max_entries=3, per_key_entries=3)
    assert all(guard.admit(i, key=i, usable_until=100, now=0) is Admission.ACCEPTED for i in ("a", "b", "c"))
    assert guard.admit("d", key="d", usable_until=100, now=1) is Admission.FULL  # fail closed
    assert guard.admit("a", key="a", usable_until=100, now=1) is Admission.REPLAYED  # and "a" is still remembered
    assert len(guard) == 3
    assert guard.admit("d", key="d", usable_until=200, now=101) is Admission.ACCEPTED  # room once the others expire


@pytest.mark.parametrize(("total", "per_key"), [(0, 1), (1, 0), (-1, 5)])
def test_nonsense_bounds_are_refused(total: int, per_key: int) -> None:
    with pytest.raises(ValueError):
        ReplayGuard(max_entries=total, per_key_entries=per_key)
