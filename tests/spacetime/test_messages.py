"""v2 messages: every variant round trips, agrees with its algebraic-type description, and hostile bytes only ever
raise DecodeError."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spacetime_strategies import client_messages, server_messages, transaction_updates

from autopilot_sync.spacetime import bsatn
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.values import TimeDuration, Timestamp


@given(client_messages)
def test_client_messages_round_trip(msg: m.ClientMessage) -> None:
    data = m.encode_client_message(msg)
    assert m.decode_client_message(data) == msg


@given(server_messages)
def test_server_messages_round_trip(msg: m.ServerMessage) -> None:
    data = m.encode_server_message(msg)
    assert m.decode_server_message(data) == msg


@given(st.integers(0, 2**32 - 1), st.integers(-(2**63), 2**63 - 1))
def test_the_prebuilt_committed_reply_is_the_encoded_reducer_result(request_id: int, micros: int) -> None:
    timestamp = Timestamp(micros)
    expected = m.ReducerResult(request_id, timestamp, m.ReducerOk(b"", m.TransactionUpdate(())))
    assert m.encode_reducer_ok_without_updates(request_id, timestamp) == m.encode_server_message(expected)


def test_the_prebuilt_committed_reply_refuses_numbers_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        m.encode_reducer_ok_without_updates(2**32, Timestamp(0))


@given(
    st.one_of(
        client_messages.map(m.encode_client_message),
        st.binary(max_size=40).map(lambda tail: b"\x03" + tail),
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2), st.binary(max_size=12), st.binary(max_size=12)).map(
            lambda t: (
                bytes([3])
                + t[0].to_bytes(4, "little")
                + bytes([t[1]])
                + len(t[2]).to_bytes(4, "little")
                + t[2]
                + len(t[3]).to_bytes(4, "little")
                + t[3]
            )
        ),
    ),
    st.binary(max_size=4),
)
def test_the_call_reducer_fast_path_decodes_and_refuses_as_the_general_reader(data: bytes, tail: bytes) -> None:
    """Any bytes, well-formed calls or not (bad flags, invalid UTF-8, truncated, trailing bytes): the same answer."""
    framed = data + tail
    try:
        general: object = m._client_message(reader := m._Reader(framed, 0)), reader.pos
    except DecodeError as exc:
        general = DecodeError
        del exc
    try:
        fast: object = m.decode_client_message_prefix(framed)
    except DecodeError:
        fast = DecodeError
    assert fast == general


@given(client_messages)
def test_hand_written_client_codec_agrees_with_the_algebraic_type(msg: m.ClientMessage) -> None:
    data = m.encode_client_message(msg)
    assert bsatn.encode(m.CLIENT_MESSAGE_TYPE, bsatn.decode(m.CLIENT_MESSAGE_TYPE, data)) == data


@given(server_messages)
def test_hand_written_server_codec_agrees_with_the_algebraic_type(msg: m.ServerMessage) -> None:
    data = m.encode_server_message(msg)
    assert bsatn.encode(m.SERVER_MESSAGE_TYPE, bsatn.decode(m.SERVER_MESSAGE_TYPE, data)) == data


@given(client_messages)
def test_truncated_client_messages_are_decode_errors(msg: m.ClientMessage) -> None:
    data = m.encode_client_message(msg)
    for end in range(len(data)):
        with pytest.raises(DecodeError):
            m.decode_client_message(data[:end])


@given(server_messages)
def test_truncated_server_messages_are_decode_errors(msg: m.ServerMessage) -> None:
    data = m.encode_server_message(msg)
    for end in range(len(data)):
        with pytest.raises(DecodeError):
            m.decode_server_message(data[:end])


@given(client_messages, server_messages, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_decode_errors(client: m.ClientMessage, server: m.ServerMessage, extra: bytes) -> None:
    with pytest.raises(DecodeError):
        m.decode_client_message(m.encode_client_message(client) + extra)
    with pytest.raises(DecodeError):
        m.decode_server_message(m.encode_server_message(server) + extra)


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        m.decode_client_message(data)
    with contextlib.suppress(DecodeError):
        m.decode_server_message(data)


@given(server_messages, st.data())
def test_corrupted_server_messages_decode_or_raise_decode_error_only(msg: m.ServerMessage, data: st.DataObject) -> None:
    encoded = bytearray(m.encode_server_message(msg))
    for _ in range(data.draw(st.integers(1, 3))):
        encoded[data.draw(st.integers(0, len(encoded) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        m.decode_server_message(bytes(encoded))


def _read_update(read: Callable[[m._Reader], m.TransactionUpdate], data: bytes) -> tuple[object, int] | str:
    reader = m._Reader(data, 0)
    try:
        return read(reader), reader.pos
    except DecodeError as exc:
        return f"DecodeError: {exc}"


@given(transaction_updates, st.data())
def test_the_inlined_transaction_update_read_agrees_with_the_checked_one(
    update: m.TransactionUpdate, data: st.DataObject
) -> None:
    # The client's hot path reads a live update with its bounds checks inlined; on anything odd it re-reads with the
    # checked reader, so on every input (whole, cut short, bytes flipped) both give the same value or the same error.
    encoded = bytearray(m.encode_server_message(update)[1:])
    for _ in range(data.draw(st.integers(0, 3))):
        if encoded:
            encoded[data.draw(st.integers(0, len(encoded) - 1))] = data.draw(st.integers(0, 255))
    encoded = encoded[: data.draw(st.integers(0, len(encoded)))]
    fast = _read_update(m._transaction_update, bytes(encoded))
    assert fast == _read_update(m._checked_transaction_update, bytes(encoded))


@given(client_messages, st.data())
def test_corrupted_client_messages_decode_or_raise_decode_error_only(msg: m.ClientMessage, data: st.DataObject) -> None:
    encoded = bytearray(m.encode_client_message(msg))
    encoded[data.draw(st.integers(0, len(encoded) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        m.decode_client_message(bytes(encoded))


@pytest.mark.parametrize("tag", [5, 6, 255])
def test_unknown_client_message_tags_are_refused(tag: int) -> None:
    with pytest.raises(DecodeError):
        m.decode_client_message(bytes([tag]) + b"\x00" * 16)


@pytest.mark.parametrize("tag", [8, 9, 255])
def test_unknown_server_message_tags_are_refused(tag: int) -> None:
    with pytest.raises(DecodeError):
        m.decode_server_message(bytes([tag]) + b"\x00" * 16)


@pytest.mark.parametrize("flags", [1, 2, 255])
def test_nonzero_call_flags_are_refused_like_the_real_server(flags: int) -> None:
    for tag in (3, 4):
        data = bytes([tag]) + b"\x01\x00\x00\x00" + bytes([flags]) + b"\x00" * 8
        with pytest.raises(DecodeError):
            m.decode_client_message(data)


def test_unsubscribe_flags_beyond_send_dropped_rows_are_refused() -> None:
    data = bytearray(m.encode_client_message(m.Unsubscribe(1, 2, m.UnsubscribeFlags.SEND_DROPPED_ROWS)))
    data[-1] = 2
    with pytest.raises(DecodeError):
        m.decode_client_message(bytes(data))


@pytest.mark.parametrize(
    "msg",
    [
        m.ReducerResult(1, Timestamp(0), m.ReducerOkEmpty()),
        m.UnsubscribeApplied(1, 2, None),
        m.SubscriptionError(None, 2, "x"),
        m.OneOffQueryResult(1, "x"),
        m.ProcedureResult(m.ProcedureInternalError("x"), Timestamp(0), TimeDuration(0), 1),
    ],
    ids=lambda msg: type(msg).__name__,
)
def test_bad_inner_sum_tags_are_refused(msg: m.ServerMessage) -> None:
    data = m.encode_server_message(msg)
    inner = {m.ReducerResult: 13, m.UnsubscribeApplied: 9, m.SubscriptionError: 1, m.OneOffQueryResult: 5}
    position = inner.get(type(msg), 1)
    for bad in (4, 0x7F, 0xFF):
        corrupted = data[:position] + bytes([bad]) + data[position + 1 :]
        assert corrupted != data
        with pytest.raises(DecodeError):
            m.decode_server_message(corrupted)


def test_huge_array_counts_are_refused_before_looping() -> None:
    # TransactionUpdate claiming 2**32-1 query sets in 5 bytes.
    with pytest.raises(DecodeError):
        m.decode_server_message(b"\x04\xff\xff\xff\xff")
    # Subscribe claiming 2**31 query strings.
    with pytest.raises(DecodeError):
        m.decode_client_message(b"\x00" + b"\x00" * 8 + b"\x00\x00\x00\x80")
    # InitialConnection whose token claims 4 GiB.
    with pytest.raises(DecodeError):
        m.decode_server_message(b"\x00" + b"\x00" * 48 + b"\xff\xff\xff\xff")


def test_wire_layout_of_a_reducer_call_matches_the_reference() -> None:
    msg = m.CallReducer(7, m.CallReducerFlags.DEFAULT, "add", b"\x01\x02")
    assert m.encode_client_message(msg) == (
        b"\x03" + b"\x07\x00\x00\x00" + b"\x00" + b"\x03\x00\x00\x00add" + b"\x02\x00\x00\x00\x01\x02"
    )


@pytest.mark.parametrize(
    "msg",
    [m.OneOffQuery(1 << 32, "x"), m.Subscribe(-1, 0, ()), m.SubscriptionError(None, 1 << 40, "x")],
    ids=lambda msg: type(msg).__name__,
)
def test_out_of_range_numbers_are_value_errors_when_encoding(msg: m.ClientMessage | m.ServerMessage) -> None:
    with pytest.raises(ValueError):
        if isinstance(msg, m.OneOffQuery | m.Subscribe):
            m.encode_client_message(msg)
        else:
            m.encode_server_message(msg)


def test_an_f32_out_of_range_is_a_value_error_when_encoding() -> None:
    from autopilot_sync.spacetime import algebraic as at

    with pytest.raises(ValueError):
        bsatn.encode(at.F32, 1e39)


def _rows_update(name: str) -> tuple[m.TableUpdate, ...]:
    rows = m.BsatnRowList.from_rows([b"\x01\x00\x00\x00", b"\x02\x00\x00\x00"])
    return (m.TableUpdate(name, (m.PersistentTableRows(rows, m.BsatnRowList.empty()),)),)


def test_query_sets_sharing_one_rows_tuple_encode_those_rows_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client holding its whole quota of sets over the same rows: the rows are encoded once per message, and the
    bytes are exactly what the algebraic type says (a distinct but equal tuple among them included)."""
    counted: list[int] = []
    real_put_tables = m._put_tables

    def counting_put_tables_double(out: bytearray, tables: tuple[m.TableUpdate, ...]) -> None:
        counted.append(len(tables))
        real_put_tables(out, tables)

    monkeypatch.setattr(m, "_put_tables", counting_put_tables_double)
    shared, other = _rows_update("person"), _rows_update("person")
    query_sets = (
        *(m.QuerySetUpdate(i, shared) for i in range(200)),
        m.QuerySetUpdate(900, other),  # equal rows in a distinct tuple: the same bytes, so the same run
        *(m.QuerySetUpdate(i, shared) for i in range(200, 256)),
    )
    data = m.encode_server_message(m.TransactionUpdate(query_sets))
    assert counted == [1]  # 256 sets, one encoding of their rows
    assert bsatn.encode(m.SERVER_MESSAGE_TYPE, bsatn.decode(m.SERVER_MESSAGE_TYPE, data)) == data
    assert m.decode_server_message(data) == m.TransactionUpdate(query_sets)
