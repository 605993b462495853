"""The SDK's WebSocket client (client/websocket.py) against RFC 6455, over real sockets.

`RawServerDouble` is a test double: an asyncio TCP server that answers the upgrade by hand and then writes whatever
bytes the test scripts, recording the client's frames (unmasked) — so frames aiohttp's server would never send
(masked, oversized, fragmented around a ping, split anywhere) can be sent. The parser's chunking is also
property-tested by feeding `data_received` directly (`RecordingTransportDouble`, a unit-test double).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_sync.client.websocket import (
    CLOSE_ABNORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    HandshakeError,
    MaskKeys,
    WebSocket,
    WebSocketError,
    client_frame,
    mask_payload,
    open_websocket,
)

pytestmark = pytest.mark.timeout(30)
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = False) -> bytes:
    """A frame as a server writes it (unmasked unless a test wants the fault)."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((first, n | (0x80 if masked else 0)))
    elif n < 1 << 16:
        head = bytes((first, 126 | (0x80 if masked else 0))) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 127 | (0x80 if masked else 0))) + n.to_bytes(8, "big")
    return head + (b"\x00\x00\x00\x00" if masked else b"") + payload


@dataclass
class Handler:
    """What the client delivered: messages and the end."""

    messages: list[tuple[bytes, bool]] = field(default_factory=list)
    ended: asyncio.Future[tuple[int | None, BaseException | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def ws_message(self, data: bytes, binary: bool) -> None:
        self.messages.append((data, binary))
        self.arrived.set()

    def ws_closed(self, code: int | None, error: BaseException | None) -> None:
        assert not self.ended.done(), "ws_closed called twice"
        self.ended.set_result((code, error))


@dataclass
class RawServerDouble:
    """Upgrades by hand (or answers `status`), then writes `script` chunks and records the client's frames."""

    script: list[bytes]
    status: str = "101 Switching Protocols"
    accept_ok: bool = True
    pong: bool = True
    received: list[tuple[int, bytes, bool]] = field(default_factory=list)  # opcode, unmasked payload, was masked
    request_head: bytes = b""
    got_frame: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/database/chat/subscribe"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.request_head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in self.request_head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()) if self.accept_ok else b"wrong"
        if not self.status.startswith("101"):
            writer.write(f"HTTP/1.1 {self.status}\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()
            return
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Protocol: v3.bsatn.spacetimedb\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        for chunk in self.script:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.001)
        try:
            while True:
                head = await reader.readexactly(2)
                length = head[1] & 0x7F
                if length == 126:
                    length = int.from_bytes(await reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await reader.readexactly(8), "big")
                masked = bool(head[1] & 0x80)
                key_bytes = await reader.readexactly(4) if masked else b"\x00\x00\x00\x00"
                payload = mask_payload(await reader.readexactly(length), int.from_bytes(key_bytes, "big"))
                opcode = head[0] & 0x0F
                self.received.append((opcode, payload, masked))
                self.got_frame.set()
                if opcode == 0x9 and self.pong:
                    writer.write(server_frame(0xA, payload))
                if opcode == 0x8:
                    writer.write(server_frame(0x8, payload[:2]))
                    await writer.drain()
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., asyncio.Future[RawServerDouble]]]:
    doubles: list[RawServerDouble] = []

    async def make(script: list[bytes], **kwargs: object) -> RawServerDouble:
        double = RawServerDouble(script, **kwargs)  # type: ignore[arg-type]
        double.server = await asyncio.start_server(double.handle, "127.0.0.1", 0)
        doubles.append(double)
        return double

    yield make  # type: ignore[misc]
    for double in doubles:
        assert double.server is not None
        double.server.close()


async def opened(double: RawServerDouble, max_bytes: int = 1 << 20) -> tuple[WebSocket, Handler]:
    ws = await open_websocket(
        double.url,
        params={"compression": "None"},
        headers={"Authorization": "Bearer t"},
        protocols=("v3.bsatn.spacetimedb", "v2.bsatn.spacetimedb"),
        max_message_bytes=max_bytes,
        within=5,
    )
    handler = Handler()
    ws.attach(handler)
    return ws, handler


async def test_the_upgrade_carries_the_subprotocols_and_headers_and_reads_back_the_chosen_one(
    raw_server: Callable[..., asyncio.Future[RawServerDouble]],
) -> None:
    double = await raw_server([])
    ws, _ = await opened(double)
    head = double.request_head.decode()
    assert head.startswith("GET /v1/database/chat/subscribe?compression=None HTTP/1.1\r\n")
    assert "Sec-WebSocket-Protocol: v3.bsatn.spacetimedb, v2.bsatn.spacetimedb\r\n" in head
    assert "Authorization: Bearer t\r\n" in head and "Sec-WebSocket-Version: 13\r\n" in head
    assert ws.protocol == "v3.bsatn.spacetimedb"
    await ws.close()


async def test_an_upgrade_answered_401_raises_handshake_error_with_the_status(
    raw_server: Callable[..., asyncio.Future[RawServerDouble]],
) -> None:
    double = await raw_server([], status="401 Unauthorized")
    with pytest.raises(HandshakeError) as caught:
        await opened(double)
    assert caught.value.status == 401 and caught.value.message == "Unauthorized"


async def test_an_upgrade_with_a_wrong_accept_key_is_refused(
    raw_server: Callable[..., asyncio.Future[RawServerDouble]],
) -> None:
    double = await raw_server([], accept_ok=False)
    with pytest.raises(HandshakeError, match="challenge"):
        await opened(double)


async def test_client_frames_are_masked_and_carry_the_payload(
    raw_server: Callable[..., asyncio.Future[RawServerDouble]],
) -> None:
    double = await raw_server([])
    ws, _ = await opened(double)
    big = bytes(range(256)) * 300  # a 64-bit length
    ws.send(b"hello")
    ws.send(big)
    await ws.drain()
    while len(double.received) < 2:
        double.got_frame.clear()
        await asyncio.wait_for(double.got_frame.wait(), 5)
    assert double.received == [(0x2, b"hello", True), (0x2, big, True)]
    await ws.close()


async def test_a_fragmented_message_arrives_whole_and_a_ping_between_its_fragments_is_answered(
    raw_server: Callable[..., asyncio.Future[RawServerDouble]],
) -> None:
    script = [server_frame(0x2, b"ab", fin=False), server_frame(0x9, b"p1"), server_frame(0x0, b"cd")]
    double = await raw_server(script)
    ws, handler = await opened(double)
    await asyncio.wait_for(handler.arrived.wait(), 5)
    assert handler.messages == [(b"abcd", True)]
    await asyncio.wait_for(double.got_frame.wait(), 5)
    assert double.received[0] == (0xA, b"p1", True)
    await ws.close()


@pytest.mark.parametrize(
    ("script", "code", "text"),
    [
        ([server_frame(0x2, b"x", masked=True)], CLOSE_PROTOCOL_ERROR, "masked"),
        ([bytes((0xC2, 1)) + b"x"], CLOSE_PROTOCOL_ERROR, "reserved"),
        ([server_frame(0x0, b"x")], CLOSE_PROTOCOL_ERROR, "continuation"),
        ([server_frame(0x9, b"x" * 126)], CLOSE_PROTOCOL_ERROR, "control frame"),
        ([server_frame(0x3, b"x")], CLOSE_PROTOCOL_ERROR, "opcode"),
        ([bytes((0x82, 127)) + (1 << 40).to_bytes(8, "big")], CLOSE_TOO_BIG, "larger"),
        ([server_frame(0x2, b"a" * 600, fin=False), server_frame(0x0, b"b" * 600)], CLOSE_TOO_BIG, "larger"),
    ],
    ids=["masked", "rsv", "orphan-continuation", "long-ping", "unknown-opcode", "huge-header", "huge-fragments"],
)
async def test_a_protocol_fault_closes_with_its_code_and_delivers_nothing_half_read(
    raw_server: Callable[..., asyncio.Future[RawServerDouble]], script: list[bytes], code: int, text: str
) -> None:
    double = await raw_server(script)
    _ws, handler = await opened(double, max_bytes=1000)
    ended_code, error = await asyncio.wait_for(handler.ended, 5)
    assert ended_code == code and isinstance(error, WebSocketError) and error.code == code
    assert text in str(error)
    assert handler.messages == []
    await asyncio.wait_for(double.got_frame.wait(), 5)
    assert double.received[0][:2] == (0x8, code.to_bytes(2, "big"))


async def test_the_servers_close_is_answered_with_its_code_and_its_reason_kept(
    raw_server: Callable[..., asyncio.Future[RawServerDouble]],
) -> None:
    double = await raw_server([server_frame(0x2, b"last"), server_frame(0x8, (1008).to_bytes(2, "big") + b"banned")])
    ws = await open_websocket(double.url, max_message_bytes=100, within=5)
    assert await ws.receive() == (b"last", True)
    assert await ws.receive() is None
    assert (ws.close_code, ws.close_reason, ws.error) == (1008, "banned", None)
    await asyncio.wait_for(double.got_frame.wait(), 5)
    assert double.received == [(0x8, (1008).to_bytes(2, "big"), True)]


async def test_a_silent_server_is_pinged_and_then_dropped_with_1006(
    raw_server: Callable[..., asyncio.Future[RawServerDouble]],
) -> None:
    double = await raw_server([], pong=False)
    ws, handler = await opened(double)
    ws.start_heartbeat(0.2)
    code, error = await asyncio.wait_for(handler.ended, 5)
    assert code == CLOSE_ABNORMAL and isinstance(error, WebSocketError) and "no pong" in str(error)
    assert double.received[0][0] == 0x9
    await asyncio.sleep(0.1)
    assert [opcode for opcode, _, _ in double.received] == [0x9]  # 1006 is never sent in a close frame


async def test_a_server_that_answers_pings_keeps_the_connection(
    raw_server: Callable[..., asyncio.Future[RawServerDouble]],
) -> None:
    double = await raw_server([])
    ws, handler = await opened(double)
    ws.start_heartbeat(0.1)
    await asyncio.sleep(0.6)
    assert not handler.ended.done()
    assert sum(1 for opcode, _, _ in double.received if opcode == 0x9) >= 2
    await ws.close()
    assert await asyncio.wait_for(handler.ended, 5) == (1000, None)


class RecordingTransportDouble(asyncio.Transport):
    """A unit-test double of a transport: records writes, never sends."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _upgraded_socket(max_bytes: int) -> tuple[WebSocket, Handler]:
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    ws = WebSocket(key, max_bytes)
    ws.connection_made(RecordingTransportDouble())
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    ws.data_received(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: " + accept)
    ws.data_received(b"\r\n\r\n")
    handler = Handler()
    ws.attach(handler)
    return ws, handler


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=300), st.booleans()), min_size=1, max_size=6),
    st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=40),
)
def test_messages_parse_alike_however_the_bytes_are_split(messages: list[tuple[bytes, bool]], cuts: list[int]) -> None:
    async def run() -> None:
        ws, handler = _upgraded_socket(10_000)
        stream = b""
        for payload, split in messages:
            if split and len(payload) > 1:
                half = len(payload) // 2
                stream += server_frame(0x2, payload[:half], fin=False) + server_frame(0x9, b"")
                stream += server_frame(0x0, payload[half:])
            else:
                stream += server_frame(0x2, payload)
        i = 0
        for cut in cuts:
            ws.data_received(stream[i : i + cut])
            i += cut
        ws.data_received(stream[i:])
        assert handler.messages == [(payload, True) for payload, _ in messages]
        assert not handler.ended.done()

    asyncio.run(run())


def test_client_frame_masks_with_its_key() -> None:
    frame = client_frame(0x2, b"abcde", bytes((1, 2, 3, 4)))
    assert frame[:2] == bytes((0x82, 0x85)) and frame[2:6] == bytes((1, 2, 3, 4))
    assert frame[6:] == bytes(b ^ k for b, k in zip(b"abcde", b"\x01\x02\x03\x04\x01", strict=True))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([0x1, 0x2, 0x8, 0x9, 0xA]),
    st.one_of(st.binary(max_size=300), st.integers(125, 127).map(bytes), st.sampled_from([65535, 65536]).map(bytes)),
    st.binary(min_size=4, max_size=4),
)
def test_client_frames_unmask_to_their_payload_with_the_big_integer_masking(
    opcode: int, payload: bytes, key: bytes
) -> None:
    # `client_frame` masks with aiohttp's compiled XOR; `mask_payload` (the readable form) must undo it exactly.
    frame = client_frame(opcode, payload, key)
    n = len(payload)
    assert frame[0] == 0x80 | opcode and frame[1] & 0x80
    if n < 126:
        assert frame[1] & 0x7F == n and frame[2:6] == key
        body = frame[6:]
    elif n < 1 << 16:
        assert frame[1] & 0x7F == 126 and int.from_bytes(frame[2:4], "big") == n and frame[4:8] == key
        body = frame[8:]
    else:
        assert frame[1] & 0x7F == 127 and int.from_bytes(frame[2:10], "big") == n and frame[10:14] == key
        body = frame[14:]
    assert mask_payload(body, int.from_bytes(key, "big")) == payload


def test_mask_keys_are_fresh_random_bytes_one_block_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # A counting stand-in for os.urandom (test double): every key is its bytes, one call per BLOCK // 4 keys.
    import autopilot_sync.client.websocket as websocket_module

    drawn: list[bytes] = []

    def urandom_double(size: int) -> bytes:
        block = bytes((len(drawn) * 7 + i) % 256 for i in range(size))
        drawn.append(block)
        return block

    monkeypatch.setattr(websocket_module.os, "urandom", urandom_double)
    keys = MaskKeys()
    per_block = MaskKeys.BLOCK // 4
    taken = [keys.next() for _ in range(per_block * 2 + 1)]
    assert len(drawn) == 3
    assert all(len(key) == 4 for key in taken)
    assert b"".join(taken) == drawn[0] + drawn[1] + drawn[2][:4]  # every byte used once, in order


def test_each_frame_a_socket_sends_has_its_own_key() -> None:
    async def run() -> None:
        ws, _ = _upgraded_socket(1000)
        transport = ws._transport
        assert isinstance(transport, RecordingTransportDouble)
        for _ in range(600):  # more than one block of keys
            ws.send(b"x")
        keys = [frame[2:6] for frame in transport.written]
        assert len(keys) == 600 and len(set(keys)) > 590  # random 32-bit keys: a repeat or two at most
        assert all(mask_payload(frame[6:], int.from_bytes(frame[2:6], "big")) == b"x" for frame in transport.written)

    asyncio.run(run())


def test_a_frame_in_the_same_read_as_the_upgrade_answer_is_delivered() -> None:
    async def run() -> None:
        key = b"dGhlIHNhbXBsZSBub25jZQ=="
        ws = WebSocket(key, 1000)
        ws.connection_made(RecordingTransportDouble())
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        ws.data_received(head + b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + server_frame(0x2, b"first"))
        await ws.upgraded()
        assert await ws.receive() == (b"first", True)

    asyncio.run(run())
