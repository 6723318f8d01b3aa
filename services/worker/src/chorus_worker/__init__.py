"""Chorus worker: durable arq jobs — e-mail, analytics, AI replies in rooms, persistence."""

__version__ = "0.1.0"
