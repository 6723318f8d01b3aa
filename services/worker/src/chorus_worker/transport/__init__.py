"""Transport: arq at the edge — the job loop, its wake-ups, its Redis client and the job policy."""
