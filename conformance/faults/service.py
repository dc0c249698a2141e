"""The faulty host's KMS half: the genuine service and client table, with the quirks of counting, keys, time
and answers (quirks.py) laid over them."""

from __future__ import annotations

import dataclasses
import math
import os
import uuid
from collections import OrderedDict
from typing import Iterable

from conformance import catalog as catalog_mod
from conformance.reference.host.config import HostConfig
from conformance.reference.host.service import Admitted, KmsService, Decision
from conformance.reference.host.state import AppTable, ClientTable, Entry
from conformance.wire import crypto, framing, hresult, layout
from conformance.wire.errors import DecodeError
from conformance.wire.messages import KmsRequest, KmsResponse

from .quirks import Quirk

OTHER_KEY = "windows-server-2019"  # the key whose ePIDs epid-names-other-key answers with


class FaultyClientTable(ClientTable):
    def __init__(self, quirks: frozenset[Quirk], **settings):
        super().__init__(**settings)
        self.quirks = quirks

    def _purge(self, table: AppTable, now: float) -> list[uuid.UUID]:
        return [] if Quirk.NO_EXPIRY in self.quirks else super()._purge(table, now)

    def _renew(self, entries: "OrderedDict[uuid.UUID, Entry]", cmid: uuid.UUID, now: float) -> bool:
        return False if Quirk.NO_RENEWAL_REPLACE in self.quirks else super()._renew(entries, cmid, now)


class FaultyService(KmsService):
    def __init__(self, config: HostConfig, quirks: Iterable[str | Quirk], fixed_count: int | None = None, **kwargs):
        self.quirks = Quirk.parse(quirks)
        self.fixed_count = fixed_count  # fixed-count's answer (None: 2 x N)
        super().__init__(config, table=FaultyClientTable(self.quirks, max_capacity=config.max_cache), **kwargs)
        if Quirk.IGNORE_TIME in self.quirks:
            self.time_tolerance = math.inf
        self.last_answer: bytes | None = None  # answer-short-payload repeats it

    # --- admission ---
    def _unopened(self, payload: bytes, error: DecodeError) -> Decision:
        quirks = self.quirks
        if Quirk.ACCEPT_BAD_VERSION in quirks and isinstance(error, framing.UnsupportedVersion):
            if error.major not in framing.SUPPORTED_MAJORS:  # answered as if it were 6.x
                return self.admit(bytes(payload[:2]) + b"\x06\x00" + bytes(payload[4:]))
            try:
                return self._admit_opened(framing.open_request(payload, allow_minor=True))
            except DecodeError as exc:
                error = exc
        if (Quirk.ANSWER_SHORT_PAYLOAD in quirks and self.last_answer is not None
                and not isinstance(error, framing.UnsupportedVersion)):
            return Decision(self.last_answer, hresult.S_OK, reason=f"answered anyway: {error}", malformed=True)
        return super()._unopened(payload, error)

    def key_for(self, kms_id: uuid.UUID) -> catalog_mod.HostKey | None:
        if Quirk.NON_CUMULATIVE_GROUPS in self.quirks:  # a tiered key activates its own tier only
            key = next((k for k in self.host_keys if kms_id in k.activates
                        and (k.tier is None or self.catalog.tier_of(kms_id) == k.tier)), None)
        else:
            key = super().key_for(kms_id)
        if key is None and Quirk.IGNORE_KEY_GROUP in self.quirks:
            key = self.host_keys[0]
        return key

    # --- counting ---
    def _count(self, request: KmsRequest, now: float) -> int:
        quirks = self.quirks
        cmid, n_policy = request.cmid, request.n_policy
        app_id = request.kms_id if Quirk.COUNT_PER_KMS_ID in quirks else request.app_id
        if Quirk.FIXED_COUNT in quirks:
            return self.fixed_count if self.fixed_count is not None else 2 * n_policy
        if Quirk.COUNT_REPEATS in quirks:
            cmid = uuid.uuid4()
        if Quirk.SHRINK_CACHE in quirks and app_id in self.table.apps:
            self.table.apps[app_id].capacity = 2 * n_policy
        if Quirk.CACHE_SIZE_50 in quirks:
            n_policy = 25  # the table sizes itself from 2 x N
        if Quirk.NO_CACHE_GROWTH in quirks and app_id in self.table.apps:
            n_policy = self.table.apps[app_id].capacity // 2  # the first N seen, for good
        return super()._count(dataclasses.replace(request, app_id=app_id, cmid=cmid, n_policy=n_policy), now)

    # --- answers ---
    def answer(self, admitted: Admitted, count: int) -> Decision:
        opened = admitted.opened
        request = opened.request
        quirks = self.quirks
        response = KmsResponse(
            epid=self._epid_for(admitted.key),
            cmid=uuid.uuid4() if Quirk.WRONG_CMID in quirks else request.cmid,
            request_time=request.request_time + (10**7 if Quirk.WRONG_TIME in quirks else 0),
            count=count,
            activation_interval=self.config.activation_interval,
            renewal_interval=self.config.renewal_interval,
            major=6 if Quirk.WRONG_VERSION in quirks else request.major,
            minor=request.minor,
        )
        hwid = os.urandom(8) if Quirk.RANDOM_HWID in quirks else self.hwid
        block = crypto.V6_AES.decrypt_block(opened.iv) if Quirk.REUSE_REQUEST_IV in quirks and opened.major == 6 else None
        sealed = framing.seal_response(response, opened, hwid=hwid, response_block=block)
        if Quirk.PAD_RESPONSE in quirks:
            sealed += bytes(512)
        self.last_answer = self._corrupt(sealed, opened.major)
        return Decision(self.last_answer, hresult.S_OK, count, opened)

    def _epid_for(self, key: catalog_mod.HostKey) -> str:
        quirks = self.quirks
        if Quirk.EPID_NAMES_OTHER_KEY in quirks and self._activates_windows(key):
            # as vlmcsd does: a Server 2019 key's ePID, whatever the key that activates
            return self._stable("epid:other-key", lambda: str(self._new_epid(self.catalog.host_key(OTHER_KEY))))
        if Quirk.RANDOM_EPID in quirks:
            return str(self._new_epid(key))
        if Quirk.BAD_EPID in quirks:
            return self.epids[key.slug].replace(f"-{self.config.lcid}-", "-9999-")
        return self.epids[key.slug]

    def _activates_windows(self, key: catalog_mod.HostKey) -> bool:
        return any(self.catalog.kms_ids[k].application == catalog_mod.WINDOWS_APP_ID for k in key.activates)

    def _corrupt(self, sealed: bytes, major: int) -> bytes:
        """The integrity quirks, after sealing; V5/V6 re-encrypt so only the named field is wrong."""
        quirks = self.quirks
        if not quirks & {Quirk.BAD_HASH, Quirk.BAD_HMAC}:
            return sealed
        if major == 4:
            return sealed[:-1] + bytes([sealed[-1] ^ 1]) if Quirk.BAD_HASH in quirks else sealed
        cipher = crypto.V5_AES if major == 5 else crypto.V6_AES
        iv = sealed[layout.IV]
        plain = bytearray(crypto.pkcs7_unpad(cipher.cbc_decrypt(iv, sealed[layout.IV.stop:])) or b"")
        trailer = len(plain) - layout.RESPONSE_TRAILER.size(major)  # where the trailer starts
        if Quirk.BAD_HASH in quirks:
            plain[trailer + layout.RESPONSE_TRAILER.slice("hash", major).stop - 1] ^= 1
        if Quirk.BAD_HMAC in quirks and major == 6:
            plain[trailer + layout.RESPONSE_TRAILER.slice("hmac", major).stop - 1] ^= 1
        return sealed[:layout.IV.stop] + cipher.cbc_encrypt(iv, crypto.pkcs7_pad(bytes(plain)))
