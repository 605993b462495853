"""The checker: pure judgement of a recorded `History` against the system's promises.

Each promise of docs/verification.md is one `ViolationKind`. The checker never talks to a process and never sleeps:
it reads values and returns a typed report, so it can be proven on planted faults (tests/verification/
test_checker.py) before its verdict on a real run is trusted.
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from dataclasses import dataclass

from autopilot_sync.contract.canonical import payload_hash
from autopilot_sync.verification.history import Ack, History, PresenceCheck, StreamView, Unknown

#: The client name violations of the host's own final history are reported under.
HOST = "host"


class ViolationKind(enum.Enum):
    """Every way a history can break a guarantee."""

    LOST = "lost"
    """An acknowledged event at or above the client's start was never applied (includes a client not caught up)."""
    DUPLICATE = "duplicate"
    """A seq was applied twice by one client."""
    OUT_OF_ORDER = "out_of_order"
    """A seq was applied after a higher one."""
    HASH_MISMATCH = "hash_mismatch"
    """The applied event's hash differs from the acknowledged one, or its stored payload does not hash to it."""
    KEY_MISMATCH = "key_mismatch"
    """The applied event's idempotency key differs from the acknowledged one."""
    UNACKNOWLEDGED = "unacknowledged"
    """A client applied an event no producer was ever acknowledged (a phantom)."""
    ACK_CONFLICT = "ack_conflict"
    """The producer was acknowledged two different events at one seq."""
    PRESENCE = "presence"
    """`active_connection` disagrees with the live connections (count, users, or one key's connections)."""
    UNKNOWN_DUPLICATED = "unknown_duplicated"
    """A call that got no answer took effect more than once (its event is in the host's history twice)."""
    UNKNOWN_LOST = "unknown_lost"
    """A call that got no answer and that its producer retries until answered never took effect."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken promise, with where it was seen."""

    kind: ViolationKind
    client: str
    stream_id: str
    seq: int | None
    detail: str

    def __str__(self) -> str:
        where = f"{self.client} {self.stream_id}" + (f" seq={self.seq}" if self.seq is not None else "")
        return f"{self.kind.value}: {where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The checker's verdict: every violation found plus counts that say how much was checked."""

    violations: tuple[Violation, ...]
    acked_events: int
    streams: int
    clients: int
    applied_events: int
    presence_checks: int
    unknown_outcomes: int = 0

    @property
    def ok(self) -> bool:
        """True when no promise was broken."""
        return not self.violations

    def kinds(self) -> set[ViolationKind]:
        """The distinct kinds of violation found."""
        return {violation.kind for violation in self.violations}

    def summary(self, limit: int = 20) -> str:
        """A short text for logs and assertion messages."""
        head = (
            f"{'OK' if self.ok else 'FAILED'}: {self.acked_events} acknowledged events on {self.streams} streams, "
            f"{self.applied_events} applications by {self.clients} clients, {self.presence_checks} presence checks, "
            f"{self.unknown_outcomes} unknown outcomes, {len(self.violations)} violations"
        )
        lines = [head, *(f"  {violation}" for violation in self.violations[:limit])]
        if len(self.violations) > limit:
            lines.append(f"  ... and {len(self.violations) - limit} more")
        return "\n".join(lines)


def check_history(history: History) -> CheckReport:
    """Check no loss, no duplicate, order, hashes and keys for every client and for the host's final history, that
    every unknown outcome resolved to at most one copy (exactly one when retried), and every presence observation.

    An event of an unknown outcome that resolved to one copy in the host's history counts as acknowledged at the seq
    the host holds it: every client must apply it, and applying it is no phantom.
    """
    violations: list[Violation] = []
    acked = _index_acks(history.acks, violations)
    accepted = resolve_unknowns(history, acked, violations)
    all_streams = history.acked_streams()
    applied_total = 0
    for client in history.clients:
        streams = history.checked_streams.get(client.name, all_streams)
        for stream_id in streams:
            view = client.stream(stream_id) or StreamView(stream_id, ())
            applied_total += len(view.applied)
            violations.extend(check_stream(client.name, view, accepted.get(stream_id, {})))
    if history.final:
        final = {view.stream_id: view for view in history.final}
        for stream_id in sorted(set(all_streams) | set(final)):
            view = final.get(stream_id) or StreamView(stream_id, ())
            violations.extend(check_stream(HOST, view, accepted.get(stream_id, {})))
    for check in history.presence:
        violations.extend(check_presence(check))
    return CheckReport(
        tuple(violations),
        acked_events=len(history.acks),
        streams=len(all_streams),
        clients=len(history.clients),
        applied_events=applied_total,
        presence_checks=len(history.presence),
        unknown_outcomes=len({(u.stream_id, u.payload_hash) for u in history.unknowns}),
    )


def _index_acks(acks: tuple[Ack, ...], violations: list[Violation]) -> dict[str, dict[int, Ack]]:
    index: dict[str, dict[int, Ack]] = defaultdict(dict)
    for ack in acks:
        known = index[ack.stream_id].get(ack.seq)
        if known is not None and known != ack:
            violations.append(
                Violation(
                    ViolationKind.ACK_CONFLICT, "producer", ack.stream_id, ack.seq, f"acknowledged {known} and {ack}"
                )
            )
            continue
        index[ack.stream_id][ack.seq] = ack
    return index


def resolve_unknowns(
    history: History, acked: dict[str, dict[int, Ack]], violations: list[Violation]
) -> dict[str, dict[int, Ack]]:
    """Resolve every unknown outcome against the host's final history; returns the acks plus the resolved events.

    Each event (stream, payload hash) of a call without an answer may be in the host's history at most once, and
    exactly once when its producer retried the call (unless a trim removed it: an ack below the retained floor).
    Without the host's history (an old record) unknown outcomes cannot be judged and add nothing.
    """
    accepted = {stream_id: dict(by_seq) for stream_id, by_seq in acked.items()}
    if not history.final:
        return accepted
    final = {view.stream_id: view for view in history.final}
    events: dict[tuple[str, str], list[Unknown]] = defaultdict(list)
    for unknown in history.unknowns:
        events[(unknown.stream_id, unknown.payload_hash)].append(unknown)
    for (stream_id, hashed), calls in sorted(events.items()):
        view = final.get(stream_id)
        copies = [event for event in view.applied if event.payload_hash == hashed] if view is not None else []
        call_ids = ", ".join(sorted({call.call_id for call in calls}))
        if len(copies) > 1:
            seqs = ", ".join(str(event.seq) for event in copies)
            violations.append(
                Violation(
                    ViolationKind.UNKNOWN_DUPLICATED,
                    "producer",
                    stream_id,
                    copies[1].seq,
                    f"call {call_ids} got no answer and its event is in the host's history {len(copies)} times "
                    f"(seqs {seqs})",
                )
            )
        elif copies:
            event = copies[0]
            accepted.setdefault(stream_id, {}).setdefault(
                event.seq, Ack(stream_id, event.seq, event.idempotency_key, event.payload_hash)
            )
        elif any(call.retried for call in calls):
            floor = view.rebuilt_from if view is not None and view.rebuilt_from is not None else 1
            trimmed = any(ack.payload_hash == hashed and ack.seq < floor for ack in acked.get(stream_id, {}).values())
            if not trimmed:
                reasons = "; ".join(sorted({call.reason for call in calls}))[:200]
                violations.append(
                    Violation(
                        ViolationKind.UNKNOWN_LOST,
                        "producer",
                        stream_id,
                        None,
                        f"call {call_ids} got no answer ({reasons}), was retried, and its event {hashed[:19]}… "
                        "never reached the host's history",
                    )
                )
    return accepted


def check_stream(client: str, view: StreamView, acked: dict[int, Ack]) -> list[Violation]:
    """One client's applied history of one stream against what the producer was acknowledged on it.

    The client must hold exactly the acknowledged seqs from its start (1, or the floor it declared a rebuild from)
    to the newest acknowledged seq, each once, ascending, each with the acknowledged key and hash.
    """
    found: list[Violation] = []
    stream_id = view.stream_id
    start = view.rebuilt_from if view.rebuilt_from is not None else 1
    seen: set[int] = set()
    highest = start - 1
    for event in view.applied:
        seq = event.seq
        if seq in seen:
            found.append(Violation(ViolationKind.DUPLICATE, client, stream_id, seq, "applied more than once"))
            continue
        seen.add(seq)
        if seq < highest:
            found.append(Violation(ViolationKind.OUT_OF_ORDER, client, stream_id, seq, f"applied after seq {highest}"))
        highest = max(highest, seq)
        ack = acked.get(seq)
        if ack is None:
            found.append(
                Violation(ViolationKind.UNACKNOWLEDGED, client, stream_id, seq, "no producer was acknowledged it")
            )
            continue
        if event.idempotency_key != ack.idempotency_key:
            found.append(
                Violation(
                    ViolationKind.KEY_MISMATCH,
                    client,
                    stream_id,
                    seq,
                    f"key {event.idempotency_key!r}, acknowledged {ack.idempotency_key!r}",
                )
            )
        if event.payload_hash != ack.payload_hash:
            found.append(
                Violation(
                    ViolationKind.HASH_MISMATCH,
                    client,
                    stream_id,
                    seq,
                    f"hash {event.payload_hash}, acknowledged {ack.payload_hash}",
                )
            )
        elif event.payload is not None and payload_hash(event.payload) != ack.payload_hash:
            found.append(
                Violation(
                    ViolationKind.HASH_MISMATCH,
                    client,
                    stream_id,
                    seq,
                    f"stored payload hashes to {payload_hash(event.payload)}, acknowledged {ack.payload_hash}",
                )
            )
    missing = sorted(seq for seq in acked if seq >= start and seq not in seen)
    if missing:
        found.append(
            Violation(
                ViolationKind.LOST,
                client,
                stream_id,
                missing[0],
                f"{len(missing)} acknowledged events never applied: {_ranges(missing)}",
            )
        )
    return found


def check_presence(check: PresenceCheck) -> list[Violation]:
    """Rows, distinct users, and connections per Nostr key must equal the truth the scenario knows."""
    found: list[Violation] = []
    rows = check.observed

    def fail(detail: str) -> None:
        found.append(Violation(ViolationKind.PRESENCE, check.label, "active_connection", None, detail))

    ids = Counter(row.connection_id for row in rows)
    repeated = sorted(cid for cid, count in ids.items() if count > 1)
    if repeated:
        fail(f"connection ids listed more than once: {repeated[:5]}")
    if len(rows) != check.expected_connections:
        fail(f"{len(rows)} connections, expected {check.expected_connections}")
    users = {row.identity for row in rows}
    if len(users) != check.expected_users:
        fail(f"{len(users)} distinct identities, expected {check.expected_users}")
    by_key = Counter(row.nostr_pubkey_hex for row in rows)
    expected = {key: count for key, count in check.expected_connections_by_key.items() if count > 0}
    for key in sorted(set(by_key) | set(expected)):
        if by_key.get(key, 0) != expected.get(key, 0):
            fail(f"key {key[:12]}… has {by_key.get(key, 0)} connections, expected {expected.get(key, 0)}")
    identities_per_key: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        identities_per_key[row.nostr_pubkey_hex].add(row.identity)
    for key, identities in sorted(identities_per_key.items()):
        if len(identities) > 1:
            fail(f"key {key[:12]}… appears under {len(identities)} identities")
    return found


def _ranges(seqs: list[int]) -> str:
    """`1-3,7,9-10` for [1,2,3,7,9,10] (bounded, so a huge loss stays a short message)."""
    parts: list[str] = []
    begin = prev = seqs[0]
    for seq in seqs[1:]:
        if seq == prev + 1:
            prev = seq
            continue
        parts.append(f"{begin}-{prev}" if begin != prev else str(begin))
        begin = prev = seq
    parts.append(f"{begin}-{prev}" if begin != prev else str(begin))
    return ",".join(parts[:10]) + (",…" if len(parts) > 10 else "")
