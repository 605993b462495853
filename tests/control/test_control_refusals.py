"""Every refusal has its status, its JSON code and its counter; nothing about a bad request is ever minted."""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from control_helpers import PRODUCER, READER, Control, encode, reader_body

from autopilot_sync.control.admission import AdmissionControl
from autopilot_sync.control.errors import ControlErrorCode
from autopilot_sync.control.request import MAX_BODY_BYTES
from autopilot_sync.nostr.event import sign_event
from autopilot_sync.nostr.keys import SecretKey
from autopilot_sync.nostr.nip98 import encode_authorization_header, payload_hash

GOOD = encode(reader_body())

Case = Callable[[Control], Awaitable[tuple[int, dict[str, object]]]]


async def _missing(control: Control) -> tuple[int, dict[str, object]]:
    return await control.post(GOOD, authorization="")


async def _wrong_scheme(control: Control) -> tuple[int, dict[str, object]]:
    return await control.post(GOOD, authorization="Bearer abc.def.ghi")


async def _not_base64(control: Control) -> tuple[int, dict[str, object]]:
    return await control.post(GOOD, authorization="Nostr !!!not-base64!!!")


async def _not_an_event(control: Control) -> tuple[int, dict[str, object]]:
    return await control.post(GOOD, authorization="Nostr " + base64.b64encode(b'{"kind":27235}').decode())


async def _bad_kind(control: Control) -> tuple[int, dict[str, object]]:
    tags = [["u", control.token_url], ["method", "POST"], ["payload", payload_hash(GOOD)]]
    event = sign_event(READER, kind=1, created_at=int(time.time()), tags=tags)
    return await control.post(GOOD, event=event)


async def _expired(control: Control) -> tuple[int, dict[str, object]]:
    return await control.post(GOOD, event=control.proof(GOOD, created_at=int(time.time()) - 120))


async def _from_the_future(control: Control) -> tuple[int, dict[str, object]]:
    return await control.post(GOOD, event=control.proof(GOOD, created_at=int(time.time()) + 120))


async def _other_host(control: Control) -> tuple[int, dict[str, object]]:
    return await control.post(GOOD, event=control.proof(GOOD, url="https://control.example/api/sync/token"))


async def _socket_address_not_public_url(control: Control) -> tuple[int, dict[str, object]]:
    url = control.token_url.replace("127.0.0.1", "localhost")
    return await control.post(GOOD, event=control.proof(GOOD, url=url))


async def _query_not_signed(control: Control) -> tuple[int, dict[str, object]]:
    return await control.post(GOOD, event=control.proof(GOOD), query="?client=other")


async def _wrong_method(control: Control) -> tuple[int, dict[str, object]]:
    return await control.post(GOOD, event=control.proof(GOOD, method="GET"))


async def _body_swapped(control: Control) -> tuple[int, dict[str, object]]:
    other = encode(reader_body(client_kind="runtime"))
    return await control.post(other, event=control.proof(GOOD))


async def _bad_signature(control: Control) -> tuple[int, dict[str, object]]:
    event = control.proof(GOOD)
    forged = dataclasses.replace(event, sig=control.proof(GOOD).sig)  # a signature of another event id
    return await control.post(GOOD, event=forged)


async def _someone_elses_key(control: Control) -> tuple[int, dict[str, object]]:
    """Claiming the producer's pubkey on an event the reader signed: the signature does not verify."""
    event = control.proof(GOOD)
    claimed = dataclasses.replace(event, pubkey=PRODUCER.public_key().hex)
    forged = dataclasses.replace(claimed, id=claimed.computed_id())
    return await control.post(GOOD, event=forged)


async def _bad_id(control: Control) -> tuple[int, dict[str, object]]:
    event = control.proof(GOOD)
    return await control.post(GOOD, event=dataclasses.replace(event, id="0" * 64))


async def _replayed(control: Control) -> tuple[int, dict[str, object]]:
    event = control.proof(GOOD)
    status, _ = await control.post(GOOD, event=event)
    assert status == 200
    return await control.post(GOOD, event=event)


async def _rate_limited(control: Control) -> tuple[int, dict[str, object]]:
    flooder = SecretKey.generate()
    # One request a minute sustained: the burst is spent before the bucket refills a whole request, however slowly
    # the machine runs (at the default rate, a second boundary crossed mid-burst refills one and lets the last in).
    slow = dataclasses.replace(control.service.config.admission, requests_per_minute=1)
    control.service.admission = AdmissionControl(slow, control.service.config.max_skew)
    burst = slow.burst
    for _ in range(burst):  # each spends the key's budget; a body that is not JSON mints nothing
        status, _ = await control.post(b"[]", secret=flooder)
        assert status == 400
    return await control.post(GOOD, secret=flooder)


async def _busy(control: Control) -> tuple[int, dict[str, object]]:
    tiny = dataclasses.replace(control.service.config.admission, replay_entries=1)
    control.service.admission = AdmissionControl(tiny, control.service.config.max_skew)
    status, _ = await control.post(b"[]", secret=SecretKey.generate())  # holds the only slot
    assert status == 400
    return await control.post(GOOD)


def _body_case(body: bytes) -> Case:
    async def case(control: Control) -> tuple[int, dict[str, object]]:
        return await control.post(body)

    return case


CASES: list[tuple[str, Case, ControlErrorCode]] = [
    ("no header", _missing, ControlErrorCode.MISSING),
    ("bearer scheme", _wrong_scheme, ControlErrorCode.MALFORMED),
    ("not base64", _not_base64, ControlErrorCode.MALFORMED),
    ("not an event", _not_an_event, ControlErrorCode.MALFORMED),
    ("kind 1", _bad_kind, ControlErrorCode.BAD_KIND),
    ("two minutes old", _expired, ControlErrorCode.EXPIRED),
    ("two minutes ahead", _from_the_future, ControlErrorCode.EXPIRED),
    ("other host", _other_host, ControlErrorCode.WRONG_URL),
    ("socket address", _socket_address_not_public_url, ControlErrorCode.WRONG_URL),
    ("query not signed", _query_not_signed, ControlErrorCode.WRONG_URL),
    ("GET proof", _wrong_method, ControlErrorCode.WRONG_METHOD),
    ("body swapped", _body_swapped, ControlErrorCode.WRONG_PAYLOAD),
    ("signature of another id", _bad_signature, ControlErrorCode.BAD_SIGNATURE),
    ("someone else's pubkey", _someone_elses_key, ControlErrorCode.BAD_SIGNATURE),
    ("id not the hash", _bad_id, ControlErrorCode.BAD_ID),
    ("same event twice", _replayed, ControlErrorCode.REPLAYED),
    ("not JSON", _body_case(b"scopes=sync.subscribe"), ControlErrorCode.INVALID_JSON),
    ("not UTF-8", _body_case(b"\xff\xfe{}"), ControlErrorCode.INVALID_JSON),
    ("JSON array", _body_case(b"[1,2]"), ControlErrorCode.INVALID_JSON),
    ("scopes a string", _body_case(encode(reader_body(scopes="sync.subscribe"))), ControlErrorCode.INVALID_BODY),
    ("scopes empty", _body_case(encode(reader_body(scopes=[]))), ControlErrorCode.INVALID_BODY),
    ("streams of numbers", _body_case(encode(reader_body(streams=[1]))), ControlErrorCode.INVALID_BODY),
    ("ttl a string", _body_case(encode(reader_body(ttl_seconds="300"))), ControlErrorCode.INVALID_BODY),
    ("ttl a float", _body_case(encode(reader_body(ttl_seconds=300.5))), ControlErrorCode.INVALID_BODY),
    ("ttl a boolean", _body_case(encode(reader_body(ttl_seconds=True))), ControlErrorCode.INVALID_BODY),
    ("no client_kind", _body_case(encode(reader_body(client_kind=...))), ControlErrorCode.INVALID_BODY),
    ("streams not an array", _body_case(encode(reader_body(streams="run:*"))), ControlErrorCode.INVALID_BODY),
    ("unknown field", _body_case(encode(reader_body(scope="sync.append"))), ControlErrorCode.INVALID_BODY),
    ("ttl below min", _body_case(encode(reader_body(ttl_seconds=59))), ControlErrorCode.INVALID_TTL),
    ("ttl above max", _body_case(encode(reader_body(ttl_seconds=901))), ControlErrorCode.INVALID_TTL),
    ("ttl zero", _body_case(encode(reader_body(ttl_seconds=0))), ControlErrorCode.INVALID_TTL),
    ("unknown scope", _body_case(encode(reader_body(scopes=["sync.everything"]))), ControlErrorCode.UNKNOWN_SCOPE),
    ("star inside", _body_case(encode(reader_body(streams=["run*x"]))), ControlErrorCode.INVALID_STREAM),
    ("empty stream", _body_case(encode(reader_body(streams=[""]))), ControlErrorCode.INVALID_STREAM),
    ("leading star", _body_case(encode(reader_body(streams=["*run"]))), ControlErrorCode.INVALID_STREAM),
    ("space in stream", _body_case(encode(reader_body(streams=["run 1"]))), ControlErrorCode.INVALID_STREAM),
    (
        "too many streams",
        _body_case(encode(reader_body(streams=[f"s{i}" for i in range(65)]))),
        ControlErrorCode.INVALID_STREAM,
    ),
    ("kind uppercase", _body_case(encode(reader_body(client_kind="Desktop"))), ControlErrorCode.INVALID_CLIENT_KIND),
    ("kind empty", _body_case(encode(reader_body(client_kind=""))), ControlErrorCode.INVALID_CLIENT_KIND),
    (
        "reader asks append",
        _body_case(encode(reader_body(scopes=["sync.subscribe", "sync.append"]))),
        ControlErrorCode.SCOPE_NOT_ALLOWED,
    ),
    ("reader asks admin", _body_case(encode(reader_body(scopes=["sync.admin"]))), ControlErrorCode.SCOPE_NOT_ALLOWED),
    ("reader asks every stream", _body_case(encode(reader_body(streams=["*"]))), ControlErrorCode.STREAM_NOT_ALLOWED),
    ("body over 64 KiB", _body_case(b" " * (MAX_BODY_BYTES + 1)), ControlErrorCode.BODY_TOO_LARGE),
    ("one key too often", _rate_limited, ControlErrorCode.RATE_LIMITED),
    ("replay memory full", _busy, ControlErrorCode.BUSY),
]


@pytest.mark.parametrize(("case", "code"), [(case, code) for _, case, code in CASES], ids=[n for n, _, _ in CASES])
async def test_refusal_has_its_status_code_and_counter(control: Control, case: Case, code: ControlErrorCode) -> None:
    status, body = await case(control)
    assert status == code.status
    assert body["error"] == code.value
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) == {"error", "message"}
    assert await control.metric("autopilot_sync_control_tokens_refused_total", reason=code.value) == 1
    assert await control.metric("autopilot_sync_control_tokens_issued_total", client_kind="desktop") == (
        1 if code is ControlErrorCode.REPLAYED else 0
    )


def test_every_code_has_a_refusal_test() -> None:
    assert {code for _, _, code in CASES} == set(ControlErrorCode)


async def test_proof_is_checked_before_the_body(control: Control) -> None:
    """An unauthenticated request learns nothing about what a valid body would be."""
    status, body = await control.post(b"not json", event=control.proof(GOOD))
    assert (status, body["error"]) == (401, "wrong_payload")
    status, body = await control.post(b"not json", authorization="")
    assert (status, body["error"]) == (401, "missing")


async def test_refused_scope_is_named_and_never_narrowed(control: Control) -> None:
    status, body = await control.post(encode(reader_body(scopes=["sync.subscribe", "sync.append"])))
    assert status == 403
    assert "sync.append" in str(body["message"])
    assert READER.public_key().npub in str(body["message"])
    assert "token" not in body


async def test_401_says_how_to_authenticate(control: Control) -> None:
    async with control.http.post(control.token_url, data=GOOD) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Nostr")
        assert response.headers["Cache-Control"] == "no-store"


async def test_replayed_proof_is_refused_on_a_fresh_connection(control: Control) -> None:
    """The guard is per service, not per connection: a captured header is useless on a new socket."""
    header = encode_authorization_header(control.proof(GOOD))
    assert (await control.post(GOOD, authorization=header))[0] == 200
    async with aiohttp.ClientSession() as other:
        headers = {"Authorization": header, "Content-Type": "application/json"}
        async with other.post(control.token_url, data=GOOD, headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "replayed"
