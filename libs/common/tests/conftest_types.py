"""Protocol types the tests annotate fixtures with (conftest is not importable by tests)."""

from __future__ import annotations

import asyncio
from typing import Protocol


class StreamControlLike(Protocol):
    """The probe app's stream controls."""

    release: asyncio.Event
    disconnected: asyncio.Event
