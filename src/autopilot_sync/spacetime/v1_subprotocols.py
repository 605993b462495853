"""The WebSocket subprotocol names that select SpacetimeDB's v1 protocol, apart from its messages.

Why a module of their own: a server lists every subprotocol it accepts at start (`host/ws_handshake.py`), but only a
v1 client needs the v1 codec (`messages_v1.py`, ten message classes: ~3% of the host's start), which is then
imported with the first v1 connection (docs/performance.md "Round 5 — startup2").
"""

V1_BSATN_PROTOCOL = "v1.bsatn.spacetimedb"
"""v1 with BSATN rows and arguments (binary frames)."""

V1_JSON_PROTOCOL = "v1.json.spacetimedb"
"""v1 with SATS-JSON rows and arguments (text frames)."""
