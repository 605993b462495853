"""Recorded histories: what each producer was told, what each client applied, what presence showed.

Besides acknowledgements a producer also records its *unknown outcomes*: calls that got no answer (a timeout, a
connection lost before the answer, the callee killed), which may or may not have taken effect. At the end the
observer records the host's own history (`final`), which is what unknown outcomes are resolved against.

Jepsen-style verification separates recording from judging. The scenarios only write down observations into these
values (frozen, JSON-serialisable); `checker.py` decides afterwards, purely, whether they satisfy the guarantees.
Keeping the record dumb means a planted fault in a history exercises exactly the same checks a real run does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Ack:
    """One append a producer was acknowledged: the runtime promised this event at this seq."""

    stream_id: str
    seq: int
    idempotency_key: str
    payload_hash: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """One event of a call that got no answer: it may have been committed or not.

    `retried`: the producer keeps retrying the call (same request id or idempotency key) until it is answered, like
    the runtime's outbox, so the event must end up in the host's history exactly once; otherwise at most once. The
    event is identified by its stream and payload hash (the seq is what the missing answer would have said).
    """

    call_id: str
    stream_id: str
    payload_hash: str
    retried: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Applied:
    """One event a client applied, in the order it applied it; `payload` is the text it stored (if it kept one)."""

    stream_id: str
    seq: int
    idempotency_key: str
    payload_hash: str
    payload: str | None = None


@dataclass(frozen=True, slots=True)
class StreamView:
    """What one client applied on one stream, in apply order.

    `rebuilt_from` is the retained floor the client declared it rebuilt from after a stale cursor ("history trimmed —
    rebuilding"); a history that starts above seq 1 without that declaration is a silent partial replay.
    """

    stream_id: str
    applied: tuple[Applied, ...]
    rebuilt_from: int | None = None


@dataclass(frozen=True, slots=True)
class ClientHistory:
    """Everything one client (a desktop process or an SDK client) applied, stream by stream."""

    name: str
    streams: tuple[StreamView, ...]

    def stream(self, stream_id: str) -> StreamView | None:
        """The view of one stream, if the client followed it."""
        for view in self.streams:
            if view.stream_id == stream_id:
                return view
        return None


@dataclass(frozen=True, slots=True)
class PresenceRow:
    """One row of `active_connection` as a subscriber saw it."""

    connection_id: str
    identity: str
    nostr_pubkey_hex: str
    client_kind: str


@dataclass(frozen=True, slots=True)
class PresenceCheck:
    """Presence observed at one moment against the truth the scenario knows (live connections per Nostr key)."""

    label: str
    observed: tuple[PresenceRow, ...]
    expected_connections_by_key: Mapping[str, int]

    @property
    def expected_connections(self) -> int:
        """Rows `active_connection` must hold."""
        return sum(self.expected_connections_by_key.values())

    @property
    def expected_users(self) -> int:
        """Distinct Nostr identities presence must show."""
        return sum(1 for count in self.expected_connections_by_key.values() if count > 0)


@dataclass(frozen=True, slots=True)
class History:
    """One run's record: the producer's acknowledgements, each client's applied events, presence checkpoints.

    `streams` lists every stream the run wrote; a client must hold all of them (a client that never saw a stream
    has lost it). `checked_streams` narrows that per client when a client deliberately follows only some streams.
    `unknowns` are the events of calls that got no answer; `final` is the host's own history at the end (one view
    per stream in seq order, `rebuilt_from` = its retained floor), empty when the run could not read it.
    """

    acks: tuple[Ack, ...]
    clients: tuple[ClientHistory, ...]
    presence: tuple[PresenceCheck, ...] = ()
    streams: tuple[str, ...] = ()
    checked_streams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unknowns: tuple[Unknown, ...] = ()
    final: tuple[StreamView, ...] = ()

    def acked_streams(self) -> tuple[str, ...]:
        """Every stream with an acknowledgement, plus those listed in `streams`, sorted."""
        return tuple(sorted({ack.stream_id for ack in self.acks} | set(self.streams)))


class HistoryRecorder:
    """A mutable collector the scenarios feed while they run; `freeze()` yields the immutable `History`."""

    def __init__(self) -> None:
        self.acks: list[Ack] = []
        self.clients: dict[str, ClientHistory] = {}
        self.presence: list[PresenceCheck] = []
        self.checked_streams: dict[str, tuple[str, ...]] = {}
        self.unknowns: dict[tuple[str, str, str], Unknown] = {}
        self.final: tuple[StreamView, ...] = ()

    def ack(self, stream_id: str, seq: int, payload_hash: str, idempotency_key: str | None = None) -> Ack:
        """Record one acknowledged append (the key defaults to the runtime's deterministic `<stream_id>:<seq>`)."""
        ack = Ack(stream_id, seq, idempotency_key or f"{stream_id}:{seq}", payload_hash)
        self.acks.append(ack)
        return ack

    def unknown(self, call_id: str, stream_id: str, payload_hash: str, *, retried: bool, reason: str) -> Unknown:
        """Record one event of a call without an answer (once per call and event, however often the call failed)."""
        key = (call_id, stream_id, payload_hash)
        known = self.unknowns.get(key)
        if known is None:
            known = self.unknowns[key] = Unknown(call_id, stream_id, payload_hash, retried, reason)
        return known

    def host_final(self, views: Iterable[StreamView]) -> None:
        """Record the host's own history at the end of the run."""
        self.final = tuple(views)

    def client(self, history: ClientHistory, streams: Iterable[str] | None = None) -> None:
        """Record (or replace) one client's final applied history, optionally limited to the streams it follows."""
        self.clients[history.name] = history
        if streams is not None:
            self.checked_streams[history.name] = tuple(streams)

    def observe_presence(self, check: PresenceCheck) -> None:
        """Record one presence observation with the truth it must match."""
        self.presence.append(check)

    def freeze(self) -> History:
        """The immutable history the checker reads."""
        return History(
            tuple(self.acks),
            tuple(self.clients.values()),
            tuple(self.presence),
            checked_streams=dict(self.checked_streams),
            unknowns=tuple(self.unknowns.values()),
            final=self.final,
        )


def history_to_json(history: History) -> dict[str, Any]:
    """A JSON object of the whole history, written next to a run's results so a failure can be re-checked offline."""
    return {
        "acks": [[a.stream_id, a.seq, a.idempotency_key, a.payload_hash] for a in history.acks],
        "clients": [
            {
                "name": client.name,
                "streams": [_view_to_json(view) for view in client.streams],
            }
            for client in history.clients
        ],
        "presence": [
            {
                "label": check.label,
                "expected": dict(check.expected_connections_by_key),
                "observed": [[r.connection_id, r.identity, r.nostr_pubkey_hex, r.client_kind] for r in check.observed],
            }
            for check in history.presence
        ],
        "streams": list(history.streams),
        "checked_streams": {name: list(ids) for name, ids in history.checked_streams.items()},
        "unknowns": [[u.call_id, u.stream_id, u.payload_hash, u.retried, u.reason] for u in history.unknowns],
        "final": [_view_to_json(view) for view in history.final],
    }


def _view_to_json(view: StreamView) -> dict[str, Any]:
    return {
        "stream_id": view.stream_id,
        "rebuilt_from": view.rebuilt_from,
        "applied": [[e.stream_id, e.seq, e.idempotency_key, e.payload_hash] for e in view.applied],
    }


def _view_from_json(data: Mapping[str, Any]) -> StreamView:
    return StreamView(
        data["stream_id"], tuple(Applied(s, int(q), k, h) for s, q, k, h in data["applied"]), data["rebuilt_from"]
    )


def history_from_json(data: Mapping[str, Any]) -> History:
    """The inverse of `history_to_json` (payload texts are not kept in the file)."""
    return History(
        acks=tuple(Ack(s, int(q), k, h) for s, q, k, h in data["acks"]),
        clients=tuple(
            ClientHistory(
                client["name"],
                tuple(_view_from_json(view) for view in client["streams"]),
            )
            for client in data["clients"]
        ),
        presence=tuple(
            PresenceCheck(
                check["label"],
                tuple(PresenceRow(*row) for row in check["observed"]),
                dict(check["expected"]),
            )
            for check in data["presence"]
        ),
        streams=tuple(data.get("streams", ())),
        checked_streams={name: tuple(ids) for name, ids in data.get("checked_streams", {}).items()},
        unknowns=tuple(Unknown(c, s, h, bool(r), why) for c, s, h, r, why in data.get("unknowns", ())),
        final=tuple(_view_from_json(view) for view in data.get("final", ())),
    )


def dumps(history: History) -> str:
    """Compact JSON text of a history."""
    return json.dumps(history_to_json(history), separators=(",", ":"), sort_keys=True)
