"""WebSocket binary frames of the v2 and v3 protocols: compression tag, compression, and v3 coalescing.

A server frame is one tag byte (0 none, 1 brotli, 2 gzip) then the body, compressed only when the uncompressed body
is longer than 1024 bytes (`decide_compression` in the real server's `websocket_building.rs`). The body is one
`ServerMessage` in v2 and one or more concatenated ones in v3 (`websocket/v3.rs`: "v3 does not define a new outer
message schema"). Client frames carry no tag and are never compressed: one `ClientMessage` in v2, one or more
concatenated in v3; an empty v3 payload is an error, as in the real server's `message_handlers_v3.rs`.

The real server coalesces v3 messages until adding the next would push the uncompressed body past 512 KiB (a
message bigger than that goes alone); the TypeScript SDK batches client messages the same way with a 256 KiB cap.

`EncodedMessage` is one server message encoded once; it remembers the frame it makes alone per compression, so a
message fanned out to many connections (a transaction's update) is encoded and compressed once, not per connection.
"""

from __future__ import annotations

import enum
import gzip
import zlib
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import TypeVar

import brotli

from autopilot_sync.spacetime.errors import DecodeError
from autopilot_sync.spacetime.messages import (
    ClientMessage,
    ServerMessage,
    decode_client_message_prefix,
    decode_server_message_prefix,
    encode_client_message,
    encode_server_message,
)

#: Bodies at most this long go uncompressed (the real server's `COMPRESS_THRESHOLD`).
COMPRESS_THRESHOLD = 1024
#: The real server's target cap on an uncompressed v3 server body (`V3_MAX_UNCOMPRESSED_PAYLOAD_SIZE`).
V3_SERVER_BODY_CAP = 512 * 1024
#: The TypeScript SDK's cap on a v3 client frame.
V3_CLIENT_FRAME_CAP = 256 * 1024
#: Largest WebSocket message the real server accepts; also the default limit on a decompressed body.
MAX_MESSAGE_SIZE = 32 * 1024 * 1024

#: Brotli quality 1 and gzip level 1: the real server optimises for compression speed.
_BROTLI_QUALITY = 1
_GZIP_LEVEL = 1


class Compression(enum.Enum):
    """The `compression` query parameter; the value is the spelling on the wire (`?compression=Gzip`)."""

    NONE = "None"
    BROTLI = "Brotli"
    GZIP = "Gzip"

    @property
    def tag(self) -> int:
        """The frame tag byte a body compressed this way carries."""
        return _TAGS[self]

    @classmethod
    def from_query_param(cls, value: str | None) -> Compression:
        """Parse the query parameter; absent means the real server's default, Brotli. Raises ValueError."""
        if value is None:
            return cls.BROTLI
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown compression {value!r}: expected None, Gzip or Brotli") from None


class FrameTag(enum.IntEnum):
    """Byte 0 of every server frame."""

    NONE = 0
    BROTLI = 1
    GZIP = 2


_TAGS = {Compression.NONE: FrameTag.NONE, Compression.BROTLI: FrameTag.BROTLI, Compression.GZIP: FrameTag.GZIP}

_SizedT = TypeVar("_SizedT", bound=Sized)


class EncodedMessage:
    """One server message's BSATN body, shareable by every connection that sends it.

    Exists so fan-out costs one encoding and, per compression, one framing (and compression) however many
    connections a transaction's update goes to: `frame` caches the frame this body makes when it travels alone.
    `len()` is the body's length (what send queues and v3 coalescing count).
    """

    __slots__ = ("_frames", "body")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._frames: dict[Compression, bytes] | None = None

    @classmethod
    def of(cls, message: ServerMessage) -> EncodedMessage:
        """Encode a server message."""
        return cls(encode_server_message(message))

    def __len__(self) -> int:
        return len(self.body)

    def frame(self, compression: Compression) -> bytes:
        """The tagged frame of this message alone (compressed when over the threshold), built once per compression."""
        frames = self._frames
        if frames is None:
            frames = self._frames = {}
        cached = frames.get(compression)
        if cached is None:
            cached = frames[compression] = encode_server_frame(self.body, compression)
        return cached


def frame_messages(
    messages: Sequence[EncodedMessage], compression: Compression, *, coalesce: bool, cap: int = V3_SERVER_BODY_CAP
) -> list[bytes]:
    """Frames for queued messages, in order: v2 (`coalesce=False`) one per message, v3 coalesced up to `cap`.

    A message that ends up alone in its frame reuses its cached frame, so shared messages are compressed once.
    """
    if not coalesce or len(messages) == 1:
        return [message.frame(compression) for message in messages]
    return [
        batch[0].frame(compression)
        if len(batch) == 1
        else encode_server_frame([message.body for message in batch], compression)
        for batch in batch_bodies(messages, cap)
    ]


def encode_server_frame(
    bodies: bytes | Sequence[bytes], compression: Compression, threshold: int = COMPRESS_THRESHOLD
) -> bytes:
    """Tag plus body (one encoded message, or several concatenated for v3), compressed when over `threshold`."""
    body = bodies if isinstance(bodies, bytes | bytearray) else b"".join(bodies)
    if compression is Compression.NONE or len(body) <= threshold:
        return b"\x00" + body
    if compression is Compression.BROTLI:
        compressed: bytes = brotli.compress(bytes(body), quality=_BROTLI_QUALITY)
        return b"\x01" + compressed
    return b"\x02" + gzip.compress(bytes(body), compresslevel=_GZIP_LEVEL, mtime=0)


def decode_server_frame(frame: bytes | bytearray | memoryview, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """The uncompressed body of a server frame; DecodeError on an unknown tag, corrupt data or a body over `max_size`.

    `max_size` guards against decompression bombs: decompression stops as soon as the output passes it.
    """
    if len(frame) == 0:
        raise DecodeError("empty server frame: the compression tag is missing")
    tag = frame[0]
    payload = bytes(frame[1:])
    if tag == FrameTag.NONE:
        if len(payload) > max_size:
            raise DecodeError(f"frame body of {len(payload)} bytes over the limit of {max_size}")
        return payload
    if tag == FrameTag.BROTLI:
        return _brotli_decompress(payload, max_size)
    if tag == FrameTag.GZIP:
        return _gzip_decompress(payload, max_size)
    raise DecodeError(f"unknown server frame compression tag {tag}")


def _brotli_decompress(payload: bytes, max_size: int) -> bytes:
    decompressor = brotli.Decompressor()
    chunks: list[bytes] = []
    total = 0
    data = payload
    try:
        while True:
            chunk: bytes = decompressor.process(data, output_buffer_limit=max_size - total + 1)
            data = b""
            chunks.append(chunk)
            total += len(chunk)
            if total > max_size:
                raise DecodeError(f"brotli body decompresses past the limit of {max_size} bytes")
            if decompressor.is_finished() or not chunk:
                break
    except brotli.error as exc:
        raise DecodeError(f"corrupt brotli body: {exc}") from None
    if not decompressor.is_finished():
        raise DecodeError("truncated brotli body")
    return b"".join(chunks)


def _gzip_decompress(payload: bytes, max_size: int) -> bytes:
    decompressor = zlib.decompressobj(wbits=31)
    try:
        body = decompressor.decompress(payload, max_size + 1)
    except zlib.error as exc:
        raise DecodeError(f"corrupt gzip body: {exc}") from None
    if len(body) > max_size:
        raise DecodeError(f"gzip body decompresses past the limit of {max_size} bytes")
    if not decompressor.eof:
        raise DecodeError("truncated gzip body")
    if decompressor.unused_data:
        raise DecodeError(f"{len(decompressor.unused_data)} bytes after the gzip stream")
    return body


def decode_server_frame_messages(
    frame: bytes | bytearray | memoryview, max_size: int = MAX_MESSAGE_SIZE
) -> list[ServerMessage]:
    """`split_server_body(decode_server_frame(frame))`, reading an uncompressed body where it lies in the frame
    rather than from a copy of it (a catch-up's frame is megabytes; the copy was a fifth of its frame decode)."""
    if isinstance(frame, bytes) and frame[:1] == bytes((FrameTag.NONE,)):
        if len(frame) - 1 > max_size:
            raise DecodeError(f"frame body of {len(frame) - 1} bytes over the limit of {max_size}")
        return split_server_body(frame, 1)
    return split_server_body(decode_server_frame(frame, max_size))


def split_server_body(body: bytes | bytearray | memoryview, start: int = 0) -> list[ServerMessage]:
    """All server messages in a v3 body (at least one) from `start`; a v2 body yields exactly one. DecodeError
    otherwise."""
    data = bytes(body)
    if len(data) <= start:
        raise DecodeError("server payload must contain at least one message")
    messages = []
    offset = start
    while offset < len(data):
        msg, offset = decode_server_message_prefix(data, offset)
        messages.append(msg)
    return messages


def split_client_frame(frame: bytes | bytearray | memoryview) -> list[ClientMessage]:
    """All client messages in a v3 binary payload, in order; DecodeError when empty or not wholly decodable."""
    data = bytes(frame)
    if not data:
        raise DecodeError("v3 websocket binary payload must contain at least one v2 client message")
    messages = []
    offset = 0
    while offset < len(data):
        msg, offset = decode_client_message_prefix(data, offset)
        messages.append(msg)
    return messages


def batch_bodies(encoded: Iterable[_SizedT], cap: int) -> Iterator[list[_SizedT]]:
    """Group encoded messages (bytes or `EncodedMessage`), in order, into payloads whose total stays within `cap`.

    The rule of both the real server and the SDK: a payload is flushed when adding the next message would take it
    past `cap`; a single message larger than `cap` travels alone.
    """
    batch: list[_SizedT] = []
    total = 0
    for message in encoded:
        if batch and total + len(message) > cap:
            yield batch
            batch = []
            total = 0
        batch.append(message)
        total += len(message)
    if batch:
        yield batch


def encode_v3_server_frames(
    messages: Iterable[ServerMessage],
    compression: Compression,
    cap: int = V3_SERVER_BODY_CAP,
    threshold: int = COMPRESS_THRESHOLD,
) -> list[bytes]:
    """Server messages coalesced into as few v3 frames as the cap allows, each tagged and maybe compressed."""
    return [
        encode_server_frame(batch, compression, threshold)
        for batch in batch_bodies((encode_server_message(m) for m in messages), cap)
    ]


def encode_v2_server_frame(
    message: ServerMessage, compression: Compression, threshold: int = COMPRESS_THRESHOLD
) -> bytes:
    """One server message as one v2 frame."""
    return encode_server_frame(encode_server_message(message), compression, threshold)


def encode_v3_client_frames(messages: Iterable[ClientMessage], cap: int = V3_CLIENT_FRAME_CAP) -> list[bytes]:
    """Client messages coalesced into v3 binary payloads of at most `cap` bytes (an oversized message goes alone)."""
    return [b"".join(batch) for batch in batch_bodies((encode_client_message(m) for m in messages), cap)]
