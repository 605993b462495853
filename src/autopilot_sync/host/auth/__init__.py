"""Who a request is: the host's own token authority.

- `tokens.py`: the host's own key, the tokens it mints and re-signs, and `TokenService.verify`, which applies the
  shared claim rules and trusted-issuer keys of `autopilot_sync.auth` (also used by the runtime's producer auth).
"""
