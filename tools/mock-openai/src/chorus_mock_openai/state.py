"""The mock's mutable runtime state, shared by the API and control endpoints."""

from __future__ import annotations

from chorus_mock_openai.config import MockConfig
from chorus_mock_openai.faults import DroppedResponseLogFilter, FaultSchedule
from chorus_mock_openai.recorder import Recorder

__all__ = ["MockState"]


class MockState:
    """Current config, queued faults and the request log; `reset()` restores the start."""

    def __init__(self, config: MockConfig) -> None:
        self.initial = config
        self.config = config
        self.faults = FaultSchedule()
        self.recorder = Recorder(config.record_limit)
        self.drop_log_filter = DroppedResponseLogFilter()

    def reset(self) -> None:
        """Restore the startup config and forget faults and recorded requests."""
        self.config = self.initial
        self.faults.clear()
        self.recorder.clear()

    def as_json(self) -> dict[str, object]:
        """The config and queued faults, as the control API reports them."""
        return {"config": self.config.as_json(), "faults": self.faults.as_json()}
