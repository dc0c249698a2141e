"""A KMS client's licensing life on a virtual clock (guide 10.3, PROTOCOL.md 10.3).

Not activated: retry every activation interval (120 min unless the host said otherwise).
Activated: renew every renewal interval (7 days); the activation is valid 180 days from the
last success; after a failed renewal, retry every 2 hours; 180 days without success: back to
unlicensed. A new installation has a 30-day grace period, which rearm restarts at most 3 times.
Times are minutes since the installation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

MINUTE = 1
HOUR = 60
DAY = 24 * HOUR
GRACE_MINUTES = 30 * DAY
VALIDITY_MINUTES = 180 * DAY
FAILURE_RETRY_MINUTES = 2 * HOUR
REARM_LIMIT = 3
DEFAULT_ACTIVATION_INTERVAL = 120
DEFAULT_RENEWAL_INTERVAL = 7 * DAY


class Licence(enum.Enum):
    GRACE = "grace"  # out-of-box grace: not activated yet
    ACTIVATED = "activated"
    UNLICENSED = "unlicensed"  # grace or validity ran out


class RearmLimitReached(Exception):
    pass


@dataclass(frozen=True)
class Answer:
    """What one attempt got: None for no host reachable, else the host's count and intervals."""

    count: int
    activation_interval: int = DEFAULT_ACTIVATION_INTERVAL
    renewal_interval: int = DEFAULT_RENEWAL_INTERVAL


@dataclass
class ClientLifecycle:
    n_policy: int
    licence: Licence = Licence.GRACE
    grace_ends: float = GRACE_MINUTES
    valid_until: float | None = None  # end of the activation's 180 days
    last_success: float | None = None
    next_attempt: float = 0.0
    activation_interval: int = DEFAULT_ACTIVATION_INTERVAL
    renewal_interval: int = DEFAULT_RENEWAL_INTERVAL
    rearms: int = 0
    history: list[tuple[float, str]] = field(default_factory=list)

    def advance(self, now: float) -> None:
        """Let time pass: validity and grace run out."""
        if self.licence is Licence.ACTIVATED and now >= self.valid_until:
            self._set(now, Licence.UNLICENSED, "activation expired after 180 days without a successful renewal")
        elif self.licence is Licence.GRACE and now >= self.grace_ends:
            self._set(now, Licence.UNLICENSED, "grace period over")

    def attempt(self, now: float, answer: Answer | None) -> None:
        """Record the outcome of the attempt made at `now` and schedule the next one."""
        self.advance(now)
        if answer is not None:
            # the host dictates both intervals in every response
            self.activation_interval, self.renewal_interval = answer.activation_interval, answer.renewal_interval
        if answer is not None and answer.count >= self.n_policy:
            self.last_success = now
            self.valid_until = now + VALIDITY_MINUTES
            if self.licence is not Licence.ACTIVATED:
                self._set(now, Licence.ACTIVATED, f"activated (count {answer.count} >= {self.n_policy})")
            self.next_attempt = now + self.renewal_interval
            return
        if self.licence is Licence.ACTIVATED:
            self.next_attempt = now + FAILURE_RETRY_MINUTES  # a failed renewal: try again in 2 hours
        else:
            self.next_attempt = now + self.activation_interval
        reason = "no host answered" if answer is None else f"count {answer.count} < {self.n_policy}"
        self.history.append((now, f"attempt failed: {reason}"))

    def rearm(self, now: float) -> None:
        if self.rearms >= REARM_LIMIT:
            raise RearmLimitReached(f"rearm allowed {REARM_LIMIT} times")
        self.rearms += 1
        self.grace_ends = now + GRACE_MINUTES
        if self.licence is Licence.UNLICENSED:
            self._set(now, Licence.GRACE, f"rearmed ({self.rearms} of {REARM_LIMIT})")

    def _set(self, now: float, licence: Licence, why: str) -> None:
        self.licence = licence
        self.history.append((now, why))
