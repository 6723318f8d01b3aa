"""Domain logic of the api (no FastAPI imports)."""
