"""The embedded Spacetime host: a real database server speaking the SpacetimeDB 2.x HTTP and WebSocket protocol.

Pure parts (module model, datastore, transactions) are synchronous; the commit log, HTTP and WebSocket servers are
adapters around them.
"""
