"""Checking a token someone else signed: the rules both the host and the runtime apply, below every service.

The host (`host/auth/tokens.py`) and the runtime's producer auth (`runtime/access.py`) verify tokens the same way,
so the shared part lives on a floor both may import (docs/architecture.md "Floors and import direction"); the
runtime reaches the host over the network only, never by import.

- `errors.py`: `TokenError` and its codes, the one error every part raises.
- `claims.py`: SpacetimeDB's claim rules over decoded claims (pure).
- `oidc.py`: signature keys of trusted OpenID Connect issuers (discovery + JWKS, cached).
- `aiohttp_client.py`: aiohttp's server imported without its client, which `oidc.py` completes before its first
  fetch (the host's start does not pay for a client it may never use).

Imports run one way: `claims`, `oidc` → `errors`, `oidc` → `aiohttp_client`; nothing here imports a service.
"""
