"""`kmsconf simulate`: many client lifecycles against the reference host on one virtual clock.

The host is the real KmsService (counting, cache, 30-day expiry) driven in-process with
sealed requests, so the guide's rules play out over months in a second or two.
"""

from __future__ import annotations

import heapq
import random
import uuid
from dataclasses import dataclass, field

from conformance import catalog as catalog_mod
from conformance.wire import framing
from conformance.wire.messages import FILETIME_UNIX_EPOCH
from conformance.wire.requests import build_request

from .host.config import HostConfig
from .client.lifecycle import DAY, Answer, ClientLifecycle, Licence
from .host.service import KmsService

CLIENT_EDITION = "Windows 10/11 Enterprise"
SERVER_EDITION = "Windows Server 2019 Datacenter"
EPOCH = 1_800_000_000.0  # virtual start, seconds since 1970 (2027-01-15)


class VirtualClock:
    def __init__(self) -> None:
        self.minutes = 0.0

    def __call__(self) -> float:
        return EPOCH + self.minutes * 60


@dataclass
class Machine:
    name: str
    edition: catalog_mod.Edition
    cmid: uuid.UUID
    life: ClientLifecycle


@dataclass
class Event:
    day: float
    machine: str
    what: str
    count: int | None = None


@dataclass
class Simulation:
    events: list[Event] = field(default_factory=list)
    machines: list[Machine] = field(default_factory=list)
    attempts: int = 0
    final_count: int = 0
    renewals: list[tuple[float, str]] = field(default_factory=list)  # (day, machine) of every successful renewal


def simulate(clients: int, servers: int, days: float, seed: int = 0, host_down: tuple[float, float] | None = None,
             join_spread_days: float = 1.0, config: HostConfig | None = None) -> Simulation:
    rng = random.Random(seed)
    clock = VirtualClock()
    service = KmsService(config or HostConfig(), clock=clock)
    catalog = service.catalog
    result = Simulation()
    queue: list[tuple[float, int]] = []
    for i in range(clients + servers):
        edition = catalog.edition(CLIENT_EDITION if i < clients else SERVER_EDITION)
        name = f"client-{i + 1:02d}" if i < clients else f"server-{i - clients + 1:02d}"
        joined = rng.uniform(0, join_spread_days * DAY)
        life = ClientLifecycle(edition.n_policy, grace_ends=joined + 30 * DAY, next_attempt=joined)
        result.machines.append(Machine(name, edition, uuid.UUID(int=rng.getrandbits(128), version=4), life))
        heapq.heappush(queue, (joined, i))
    end = days * DAY
    while queue and queue[0][0] <= end:
        now, index = heapq.heappop(queue)
        machine = result.machines[index]
        clock.minutes = now
        down = host_down is not None and host_down[0] * DAY <= now < host_down[1] * DAY
        answer = None if down else _ask(service, machine, clock)
        seen = len(machine.life.history)
        renewing = machine.life.licence is Licence.ACTIVATED
        machine.life.attempt(now, answer)
        if renewing and machine.life.last_success == now:
            result.renewals.append((now / DAY, machine.name))
        result.attempts += 1
        count = None if answer is None else answer.count
        for at, what in machine.life.history[seen:]:
            previous = machine.life.history[-2][1] if len(machine.life.history) > 1 else ""
            if not what.startswith("attempt failed"):
                result.events.append(Event(at / DAY, machine.name, what, count))
            elif machine.life.licence is Licence.ACTIVATED and not previous.startswith("attempt failed"):
                result.events.append(Event(at / DAY, machine.name, "renewal " + what, count))  # first of a run
        heapq.heappush(queue, (machine.life.next_attempt, index))
    for machine in result.machines:
        before = machine.life.licence
        machine.life.advance(end)
        if machine.life.licence is not before:
            result.events.append(Event(machine.life.history[-1][0] / DAY, machine.name, machine.life.history[-1][1]))
    clock.minutes = end
    result.final_count = service.status()["count"]
    service.store.close()
    return result


def _ask(service: KmsService, machine: Machine, clock: VirtualClock) -> Answer | None:
    filetime = FILETIME_UNIX_EPOCH + int(clock() * 10**7)
    request = build_request(machine.edition, cmid=machine.cmid, workstation=f"{machine.name}.sim.test",
                            request_time=filetime)
    decision = service.handle(framing.seal_request(request))
    if decision.payload is None:
        return None
    response = framing.open_response(decision.payload).response
    return Answer(response.count, response.activation_interval, response.renewal_interval)
