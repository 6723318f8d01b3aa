"""Client-side helpers for the end-to-end suite (real protocols, real client libraries)."""
