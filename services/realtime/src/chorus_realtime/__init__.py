"""Chorus realtime: WebSocket rooms and SSE streams, fanned out across replicas via Redis."""

__version__ = "0.1.0"
