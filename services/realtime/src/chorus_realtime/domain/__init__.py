"""Domain logic (no FastAPI imports)."""
