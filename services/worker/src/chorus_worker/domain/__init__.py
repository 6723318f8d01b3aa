"""Domain logic of the worker: mail, reply streaming, locks, dead letters (no arq loop code)."""
