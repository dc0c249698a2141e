"""What a client under test makes of the host's answer (KMS-CLI-010..014): one run per broken rule or count.

The client is run against a host that answers every request of the run the same way
(conformance/harness/broken_answers.py); what it says about the answer is read from its exit status
or its output, as the user said (--client-exit-status, --client-activated, --client-rejected).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from .broken_answers import BrokenAnswerService
from .client_mode import ClientRun, run_client
from .client_process import last_lines
from .run import ClientReport


@dataclass
class AnswerRun:
    mode: str
    run: ClientRun
    report: ClientReport

    @property
    def version(self) -> int | None:
        """The KMS version of the requests the client sent (the first one's)."""
        requests = self.run.requests
        return requests[0].reply.decision.opened.major if requests else None

    @property
    def activated(self) -> bool | None:
        """Did it say it activated? None: its report has no way to say so."""
        if self.report.exit_status:
            return self.run.returncode == 0
        return bool(re.search(self.report.activated, self.output)) if self.report.activated else None

    @property
    def rejected(self) -> bool | None:
        if self.report.exit_status:
            return self.run.returncode != 0
        return bool(re.search(self.report.rejected, self.output)) if self.report.rejected else None

    @property
    def output(self) -> str:
        return self.run.stdout + self.run.stderr

    def said(self) -> str:
        return f"exit status {self.run.returncode}; its last lines: {last_lines(self.output)}"


@dataclass
class AnswerRuns:
    command: str | None  # a client given its host ({host}:{port})
    report: ClientReport | None
    timeout: float
    _runs: dict[str, AnswerRun] = field(default_factory=dict)

    def run(self, mode: str) -> AnswerRun:
        if not self.command:
            pytest.skip(reason="judged on a client given its host by hand: --client-cmd \"COMMAND {host}:{port}\" "
                               "(this run's client discovers its host)")
        if self.report is None:
            pytest.skip(reason="say how the client reports its result: --client-exit-status (0 = activated), or "
                               "--client-activated REGEX and/or --client-rejected REGEX matched on its output")
        if mode not in self._runs:
            self._runs[mode] = AnswerRun(mode, run_client(self.command, self.timeout, service=BrokenAnswerService(mode)),
                                         self.report)
        return self._runs[mode]

    def version(self) -> int | None:
        """The client's KMS version, from its run against a valid answer."""
        return self.run("at").version

