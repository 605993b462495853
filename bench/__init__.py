"""Benchmarks: `python -m bench` compares our system with NATS JetStream and Redis Streams (docs/performance.md)."""
