"""Talking to a KMS host over TCP: addresses, the exchange runner that owns the socket, and typed outcomes."""
