"""Example modules the host can run: small, complete, and used by the conformance and host tests."""
