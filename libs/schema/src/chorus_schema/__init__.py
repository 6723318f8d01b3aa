"""The Chorus database schema: the contract between the api and the worker in Postgres.

The api serves these tables and the worker writes several of them (mail markers, room
history, analytics, dead letters, LLM usage), so the models and their migrations live in
one package both depend on, rather than in either service. ``python -m chorus_api migrate``
runs :func:`chorus_schema.migrate.upgrade`.
"""
