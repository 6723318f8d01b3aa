"""Chorus llm-gateway: an OpenAI-compatible streaming proxy with fallback and exact limits."""

__version__ = "0.1.0"
