"""The sync contract: the vocabulary the module, the SDK, the runtime, the desktop and control all share.

It imports only `spacetime/`, the standard library and pure third-party code, so any package can use it without
loading another package's machinery (importing the SDK never loads the sync module or the host). The pieces:
`errors` (the one coded-error base), `codes` (the sync module's error codes), `scopes` (token scopes and how claims
are read), `canonical` (canonical JSON and the payload hash), `stream_chain` (the per-stream hash chain).
"""
