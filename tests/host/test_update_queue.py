"""`UpdateQueue`: each applied commit is evaluated once, in commit order, and handed over when it is durable."""

from __future__ import annotations

from autopilot_sync.host.caller import Caller
from autopilot_sync.host.transaction import CommittedTx
from autopilot_sync.host.update_queue import UpdateQueue
from autopilot_sync.spacetime.values import Identity, Timestamp


def tx(offset: int) -> CommittedTx:
    return CommittedTx(offset, Timestamp(offset), "r", Caller(Identity(1)), ())


class Evaluations:
    """Test double of the hub's evaluation: records each offset it was asked for, answers `offset * 10`."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, committed: CommittedTx) -> int:
        self.asked.append(committed.offset)
        return committed.offset * 10


def test_commits_evaluated_early_are_handed_over_once_each_in_commit_order() -> None:
    evaluate = Evaluations()
    queue: UpdateQueue[int] = UpdateQueue(evaluate)
    one, two, three = tx(1), tx(2), tx(3)
    queue.applied([one, two])
    assert queue.waiting and queue.unevaluated_after(0) == [one, two] and queue.unevaluated_after(1) == [two]
    queue.evaluate_now()
    assert evaluate.asked == [1, 2] and queue.evaluated_offset == 2 and not queue.waiting
    queue.applied([three])
    assert queue.take(one) == 10 and queue.take(two) == 20
    assert evaluate.asked == [1, 2], "nothing is evaluated twice"
    assert queue.take(three) == 30, "a commit durable before its turn to be evaluated is evaluated then"
    assert evaluate.asked == [1, 2, 3] and len(queue) == 0


def test_a_commit_the_queue_never_heard_of_is_evaluated_when_durable() -> None:
    evaluate = Evaluations()
    queue: UpdateQueue[int] = UpdateQueue(evaluate)
    assert queue.take(tx(5)) == 50 and queue.evaluated_offset == 5


def test_clear_and_map_evaluated_change_only_what_was_not_handed_over() -> None:
    evaluate = Evaluations()
    queue: UpdateQueue[int] = UpdateQueue(evaluate)
    one, two, three = tx(1), tx(2), tx(3)
    queue.applied([one, two, three])
    queue.evaluate_now()
    assert queue.take(one) == 10
    queue.map_evaluated(lambda committed, result: -result)
    assert queue.take(two) == -20
    queue.clear()
    assert len(queue) == 0 and not queue.waiting
