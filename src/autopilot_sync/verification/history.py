"""Recorded histories: what each producer was told, what each client applied, what presence showed.

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
    """

    acks: tuple[Ack, ...]
    clients: tuple[ClientHistory, ...]
    presence: tuple[PresenceCheck, ...] = ()
    streams: tuple[str, ...] = ()
    checked_streams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

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

    def ack(self, stream_id: str, seq: int, payload_hash: str) -> Ack:
        """Record one acknowledged append (the key is the runtime's deterministic `<stream_id>:<seq>`)."""
        ack = Ack(stream_id, seq, f"{stream_id}:{seq}", payload_hash)
        self.acks.append(ack)
        return ack

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
        )


def history_to_json(history: History) -> dict[str, Any]:
    """A JSON object of the whole history, written next to a run's results so a failure can be re-checked offline."""
    return {
        "acks": [[a.stream_id, a.seq, a.idempotency_key, a.payload_hash] for a in history.acks],
        "clients": [
            {
                "name": client.name,
                "streams": [
                    {
                        "stream_id": view.stream_id,
                        "rebuilt_from": view.rebuilt_from,
                        "applied": [[e.stream_id, e.seq, e.idempotency_key, e.payload_hash] for e in view.applied],
                    }
                    for view in client.streams
                ],
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
    }


def history_from_json(data: Mapping[str, Any]) -> History:
    """The inverse of `history_to_json` (payload texts are not kept in the file)."""
    return History(
        acks=tuple(Ack(s, int(q), k, h) for s, q, k, h in data["acks"]),
        clients=tuple(
            ClientHistory(
                client["name"],
                tuple(
                    StreamView(
                        view["stream_id"],
                        tuple(Applied(s, int(q), k, h) for s, q, k, h in view["applied"]),
                        view["rebuilt_from"],
                    )
                    for view in client["streams"]
                ),
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
    )


def dumps(history: History) -> str:
    """Compact JSON text of a history."""
    return json.dumps(history_to_json(history), separators=(",", ":"), sort_keys=True)
