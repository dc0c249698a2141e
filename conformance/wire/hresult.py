"""HRESULT and NCA status names (PROTOCOL.md 9)."""

from __future__ import annotations

S_OK = 0x00000000
SL_E_VL_NOT_ENOUGH_COUNT = 0xC004F038
SL_E_VL_BINDING_SERVICE_NOT_ENABLED = 0xC004F039
SL_E_VL_KEY_MANAGEMENT_SERVICE_NOT_ACTIVATED = 0xC004F041
SL_E_VL_KEY_MANAGEMENT_SERVICE_ID_MISMATCH = 0xC004F042
SL_E_VL_INVALID_TIMESTAMP = 0xC004F06C
SL_E_VL_BINDING_SERVICE_UNAVAILABLE = 0xC004F074
E_INVALID_DATA = 0x8007000D
SL_REMAPPING_SP_STATUS_INVALIDARG = 0xC004D104
NCA_S_OP_RNG_ERROR = 0x1C010002
NCA_S_UNK_IF = 0x1C010003
NCA_S_PROTO_ERROR = 0x1C01000B
RPC_S_SERVER_UNAVAILABLE = 0x800706BA
RPC_S_COMM_FAILURE = 0x8007071C

NAMES = {
    value: name
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int) and not name.startswith("_")
}
NAMES[E_INVALID_DATA] = "ERROR_INVALID_DATA"


def name(code: int) -> str:
    """Symbolic name, or the hex value when the code is not one KMS uses."""
    return NAMES.get(code & 0xFFFFFFFF, f"0x{code & 0xFFFFFFFF:08X}")


def describe(code: int) -> str:
    return f"0x{code & 0xFFFFFFFF:08X} ({name(code)})"
