"""The desktop client: follows event streams through the client SDK, applies them in order, shows presence.

Layout, following the one-way data flow (SDK rows → apply → store → state → UI):
`identity` (the user's Nostr key), `tokens` (session tokens from control), `apply` (the pure ordering/dedupe engine),
`rebuild` (stale cursor decisions), `acks` (bounded-rate checkpoint reports), `store` (SQLite), `sync` (SDK wiring),
`state` (the observable view), `headless` (JSON lines), `app` (Textual), `screenshots`, `cli`.
"""
