"""The commits between their apply and their fsync, with their subscription updates evaluated while the fsync runs.

Why: a one-event durable call used to wait for its fsync and only then evaluate the subscriptions (~0.2 ms of Python
on the event loop), so the evaluation sat on every call's path to its subscribers' updates. The evaluation reads
nothing a client could see and sends nothing, so it can run as soon as the commit is applied (and its flush handed
to the fsync thread), while the loop would otherwise wait; what it returns is held here and sent only once the
commit is durable (docs/architecture.md "Durability", docs/performance.md "Round 8 — overlap").

`UpdateQueue` is pure bookkeeping: told each applied transaction (`applied`, in commit order), it asks its `evaluate`
for each one in that order (at the latest when the transaction is durable: `take`), and keeps what came back until
`take` hands it over. What stays with the caller: when to evaluate (the hub schedules `evaluate_now` for the end of
the loop turn that applied the commit, after the flush started) and what to send once durable. The subscription
engine reads the transactions applied but not yet evaluated from here (`unevaluated_after`: what a join mirror
undoes), and the newest evaluated offset (`evaluated_offset`: when an unsubscribed set may leave the indexes).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from autopilot_sync.host.transaction import CommittedTx

Evaluated = TypeVar("Evaluated")


@dataclass(slots=True)
class _Done(Generic[Evaluated]):
    tx: CommittedTx
    result: Evaluated


class UpdateQueue(Generic[Evaluated]):
    """Applied transactions not yet evaluated, then their evaluated results until the transaction is durable."""

    def __init__(self, evaluate: Callable[[CommittedTx], Evaluated]) -> None:
        self._evaluate = evaluate
        self._applied: deque[CommittedTx] = deque()
        self._done: deque[_Done[Evaluated]] = deque()
        #: The newest offset handed to `evaluate` (0: none yet).
        self.evaluated_offset = 0

    def __len__(self) -> int:
        """Transactions held, evaluated or not."""
        return len(self._applied) + len(self._done)

    @property
    def waiting(self) -> bool:
        """Whether some applied transaction is not evaluated yet."""
        return bool(self._applied)

    def applied(self, txs: Sequence[CommittedTx]) -> None:
        """Transactions just applied (committed, written to the log, not yet durable), in commit order."""
        self._applied.extend(txs)

    def unevaluated_after(self, offset: int) -> list[CommittedTx]:
        """The transactions after `offset` applied but not yet evaluated, oldest first."""
        return [tx for tx in self._applied if tx.offset > offset]

    def evaluate_now(self) -> None:
        """Evaluate every applied transaction not yet evaluated, in commit order."""
        applied, done, evaluate = self._applied, self._done, self._evaluate
        while applied:
            tx = applied.popleft()  # before `evaluate`: it is no longer "after" what the mirrors hold
            self.evaluated_offset = tx.offset
            done.append(_Done(tx, evaluate(tx)))

    def take(self, tx: CommittedTx) -> Evaluated:
        """What `evaluate` returned for `tx`, now durable (evaluated here first when it was not yet).

        Transactions become durable in commit order, so `tx` is the oldest held; one this queue was never told of
        (applied before it existed) is evaluated on the spot, as are any older ones left over.
        """
        if self._applied and self._applied[0].offset <= tx.offset:
            self.evaluate_now()
        done = self._done
        while done and done[0].tx.offset < tx.offset:
            done.popleft()  # durable before this one and never taken: its listeners ran without the hub
        if done and done[0].tx is tx:
            return done.popleft().result
        self.evaluated_offset = max(self.evaluated_offset, tx.offset)
        return self._evaluate(tx)

    def map_evaluated(self, change: Callable[[CommittedTx, Evaluated], Evaluated]) -> None:
        """Replace every evaluated result not yet taken with `change(tx, result)` (e.g. a publish dropped every
        query set: updates evaluated for them must not go out)."""
        for item in self._done:
            item.result = change(item.tx, item.result)

    def clear(self) -> None:
        """Forget everything held (the log failed: none of it will ever be durable, so none of it is sent)."""
        self._applied.clear()
        self._done.clear()
