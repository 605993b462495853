"""The runtime: producers append run and worker events over HTTP; a transactional outbox publishes them in order.

Data flows one way: HTTP append → SQLite (event + outbox row, one transaction) → publisher → `append_sync_events`
through the client SDK → host commit. See docs/runtime.md.
"""
