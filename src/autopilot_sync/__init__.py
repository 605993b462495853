"""autopilot-sync: Spacetime-only real-time sync.

A runtime publishes ordered event streams into a SpacetimeDB-protocol database; desktop clients subscribe, resume
after any disconnect and see presence as Nostr public keys; a control service issues short-lived session tokens.
"""

__version__ = "0.1.0"
