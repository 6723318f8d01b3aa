"""A Python client of Chorus realtime: chat rooms over WebSocket, notifications over SSE.

Both clients keep their connection open in the background, reconnect after any drop with
jittered exponential backoff (to the next of their base URLs), and resume from the last
event they received, so an application sees every event once, in order.
"""

from __future__ import annotations

from chorus_client.backoff import Backoff
from chorus_client.event_stream import EventStreamClient
from chorus_client.reconnecting import (
    FINAL_CLOSE_CODES,
    Close,
    Frame,
    FrameHandler,
    ReconnectingClient,
)
from chorus_client.room import SUBPROTOCOL, RoomClient

__all__ = [
    "FINAL_CLOSE_CODES",
    "SUBPROTOCOL",
    "Backoff",
    "Close",
    "EventStreamClient",
    "Frame",
    "FrameHandler",
    "ReconnectingClient",
    "RoomClient",
]
