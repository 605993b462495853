"""Who a request is: the host's token authority, split by job so nothing imports in a circle.

- `errors.py`: `TokenError` and its codes, the one error every part raises.
- `claims.py`: SpacetimeDB's claim rules over decoded claims (pure; also used by the runtime's producer auth).
- `oidc.py`: signature keys of trusted OpenID Connect issuers (discovery + JWKS, cached).
- `tokens.py`: the host's own key, the tokens it mints and re-signs, and `TokenService.verify`, which uses the other
  three.

Imports run one way: `tokens` → `oidc`, `claims` → `errors`.
"""
