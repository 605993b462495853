"""Wire layer for the SpacetimeDB 2.x protocol: types, BSATN, messages, identities, module schema.

Pure and synchronous (sans-I/O): every other part of the system builds on these functions, and none of them touches
a socket or a file.
"""
