"""Chorus api: users, auth, orders, dashboard and room history over async Postgres."""

__version__ = "0.1.0"
