"""The decode error of every wire format: bytes that do not form the structure asked for."""


class DecodeError(ValueError):
    """Bytes that do not form the structure asked for; the message says which field and why."""
