"""Frames: the compression tag and threshold of the real server, v3 coalescing, and the decompression-bomb guard."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import zlib

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st
from spacetime_strategies import client_messages, server_messages

from autopilot_sync.spacetime import frames as f
from autopilot_sync.spacetime import messages as m
from autopilot_sync.spacetime.errors import DecodeError


def test_compression_query_param_names_and_tags() -> None:
    assert f.Compression.from_query_param("None") is f.Compression.NONE
    assert f.Compression.from_query_param("Gzip").tag == 2
    assert f.Compression.from_query_param("Brotli").tag == 1
    assert f.Compression.from_query_param(None) is f.Compression.BROTLI
    with pytest.raises(ValueError):
        f.Compression.from_query_param("gzip")


@pytest.mark.parametrize("compression", list(f.Compression))
def test_bodies_up_to_the_threshold_go_uncompressed(compression: f.Compression) -> None:
    body = b"a" * f.COMPRESS_THRESHOLD
    assert f.encode_server_frame(body, compression) == b"\x00" + body


@pytest.mark.parametrize(("compression", "tag"), [(f.Compression.BROTLI, 1), (f.Compression.GZIP, 2)])
def test_bodies_over_the_threshold_are_compressed(compression: f.Compression, tag: int) -> None:
    body = b"a" * (f.COMPRESS_THRESHOLD + 1)
    frame = f.encode_server_frame(body, compression)
    assert frame[0] == tag
    assert len(frame) < len(body)
    assert f.decode_server_frame(frame) == body


def test_no_compression_never_compresses() -> None:
    body = b"a" * 100_000
    assert f.encode_server_frame(body, f.Compression.NONE) == b"\x00" + body


@given(st.binary(max_size=4000), st.sampled_from(list(f.Compression)), st.integers(0, 2048))
def test_frames_round_trip(body: bytes, compression: f.Compression, threshold: int) -> None:
    assert f.decode_server_frame(f.encode_server_frame(body, compression, threshold)) == body


def test_decompression_bombs_are_refused() -> None:
    body = b"\x00" * 5_000_000
    for frame in (b"\x01" + brotli.compress(body), b"\x02" + gzip.compress(body)):
        with pytest.raises(DecodeError, match="limit"):
            f.decode_server_frame(frame, max_size=1_000_000)
        assert f.decode_server_frame(frame, max_size=len(body)) == body
    with pytest.raises(DecodeError):
        f.decode_server_frame(b"\x00" + body, max_size=1_000_000)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x03abc",
        b"\xff",
        b"\x01not brotli at all",
        b"\x02not gzip",
        b"\x02" + gzip.compress(b"hello")[:-4],
        b"\x02" + gzip.compress(b"hello") + b"junk",
        b"\x01" + brotli.compress(b"hello" * 300)[:-2],
        b"\x02" + zlib.compress(b"zlib, not gzip"),
    ],
)
def test_corrupt_frames_are_decode_errors(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        f.decode_server_frame(frame)


@given(st.binary(max_size=64))
def test_random_frames_decode_or_raise_decode_error_only(frame: bytes) -> None:
    with contextlib.suppress(DecodeError):
        f.decode_server_frame(frame)


@given(st.lists(server_messages, min_size=1, max_size=6), st.sampled_from(list(f.Compression)))
def test_v3_server_frames_carry_all_messages_in_order(msgs: list[m.ServerMessage], compression: f.Compression) -> None:
    frames = f.encode_v3_server_frames(msgs, compression, cap=200)
    decoded = [msg for frame in frames for msg in f.split_server_body(f.decode_server_frame(frame))]
    assert decoded == msgs


@given(st.lists(client_messages, min_size=1, max_size=8))
def test_v3_client_frames_carry_all_messages_in_order(msgs: list[m.ClientMessage]) -> None:
    frames = f.encode_v3_client_frames(msgs, cap=64)
    assert [msg for frame in frames for msg in f.split_client_frame(frame)] == msgs


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(1, 120))
def test_batches_respect_the_cap_except_for_oversized_single_messages(bodies: list[bytes], cap: int) -> None:
    batches = list(f.batch_bodies(bodies, cap))
    assert [b for batch in batches for b in batch] == bodies
    for batch in batches:
        assert batch
        assert len(batch) == 1 or sum(map(len, batch)) <= cap
    # Greedy: the next batch's first message would not have fitted in the previous batch.
    for before, after in itertools.pairwise(batches):
        assert sum(map(len, before)) + len(after[0]) > cap


def test_a_v2_frame_holds_exactly_one_message() -> None:
    msg = m.TransactionUpdate(())
    frame = f.encode_v2_server_frame(msg, f.Compression.GZIP)
    assert frame == b"\x00" + m.encode_server_message(msg)
    assert f.split_server_body(f.decode_server_frame(frame)) == [msg]


def test_empty_v3_payloads_are_refused() -> None:
    with pytest.raises(DecodeError):
        f.split_client_frame(b"")
    with pytest.raises(DecodeError):
        f.split_server_body(b"")


def test_a_v3_client_frame_with_a_truncated_last_message_is_refused() -> None:
    frame = m.encode_client_message(m.OneOffQuery(1, "SELECT 1")) + m.encode_client_message(m.OneOffQuery(2, "x"))
    with pytest.raises(DecodeError):
        f.split_client_frame(frame[:-1])


def test_server_compresses_a_large_v3_body_once() -> None:
    msgs = [m.SubscriptionError(None, i, "e" * 600) for i in range(3)]
    (frame,) = f.encode_v3_server_frames(msgs, f.Compression.GZIP)
    assert frame[0] == 2
    assert f.split_server_body(f.decode_server_frame(frame)) == msgs


@given(st.lists(server_messages, min_size=1, max_size=6), st.sampled_from(list(f.Compression)), st.booleans())
def test_framing_encoded_messages_gives_the_same_bytes_as_framing_messages(
    msgs: list[m.ServerMessage], compression: f.Compression, coalesce: bool
) -> None:
    encoded = [f.EncodedMessage.of(msg) for msg in msgs]
    frames = f.frame_messages(encoded, compression, coalesce=coalesce)
    if coalesce:
        assert frames == f.encode_v3_server_frames(msgs, compression)
    else:
        assert frames == [f.encode_v2_server_frame(msg, compression) for msg in msgs]


def test_a_shared_message_is_compressed_once_per_compression(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = f.EncodedMessage.of(m.SubscriptionError(None, 1, "e" * 2000))
    calls: list[f.Compression] = []
    original = f.encode_server_frame

    def counting(bodies: bytes | list[bytes], compression: f.Compression, threshold: int = 1024) -> bytes:
        calls.append(compression)
        return original(bodies, compression, threshold)

    monkeypatch.setattr(f, "encode_server_frame", counting)
    for _ in range(100):  # a hundred connections, in two compressions, each sending the message alone
        for compression in (f.Compression.GZIP, f.Compression.BROTLI):
            (frame,) = f.frame_messages([shared], compression, coalesce=True)
            assert f.decode_server_frame(frame) == shared.body
    assert calls == [f.Compression.GZIP, f.Compression.BROTLI]
    # Coalesced with another message, the shared one is framed inside the joint body (not from its cache).
    other = f.EncodedMessage.of(m.TransactionUpdate(()))
    (joint,) = f.frame_messages([shared, other], f.Compression.GZIP, coalesce=True)
    assert f.decode_server_frame(joint) == shared.body + other.body
    assert len(shared) == len(shared.body)
