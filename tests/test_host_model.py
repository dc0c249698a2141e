"""A hypothesis state machine drives the host's client table and checks it against a simple model."""

import uuid

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from conformance.reference.host.state import ENTRY_LIFETIME_SECONDS, ClientTable

APP = uuid.UUID("55c92734-d682-4d71-983e-d6ec3f16059f")


class HostTableMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.table = ClientTable()
        self.now = 0.0
        self.model: dict[uuid.UUID, float] = {}  # CMID -> last seen
        self.capacity = 0
        self.known: list[uuid.UUID] = []

    def _model_request(self, cmid, n):
        self.capacity = max(self.capacity, 2 * n)
        self.model = {c: t for c, t in self.model.items() if self.now - t < ENTRY_LIFETIME_SECONDS}
        self.model[cmid] = self.now  # new, or a renewal restarting its 30 days
        while len(self.model) > self.capacity:
            del self.model[min(self.model, key=self.model.get)]  # the oldest goes
        return len(self.model)

    @rule(n=st.sampled_from([5, 25]))
    def new_client(self, n):
        cmid = uuid.uuid4()
        self.known.append(cmid)
        assert self.table.record(APP, cmid, n, self.now).count == self._model_request(cmid, n)

    @rule(data=st.data(), n=st.sampled_from([5, 25]))
    def repeat_client(self, data, n):
        if not self.known:
            return
        cmid = data.draw(st.sampled_from(self.known))
        assert self.table.record(APP, cmid, n, self.now).count == self._model_request(cmid, n)

    @rule(seconds=st.sampled_from([1, 3600, 86400, 29 * 86400, 30 * 86400, 31 * 86400]))
    def time_passes(self, seconds):
        self.now += seconds

    @invariant()
    def count_and_cache_size_match_the_model(self):
        live = {c for c, t in self.model.items() if self.now - t < ENTRY_LIFETIME_SECONDS}
        assert self.table.count(APP, self.now) == len(live)
        assert self.table.capacity(APP) == self.capacity


TestHostTable = HostTableMachine.TestCase
TestHostTable.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
