"""How jobs reach what the process opened: typed views of arq's ``ctx``.

arq has no dependency injection: it hands every job (and hook) one ``ctx`` dict. The
worker puts its settings there when it is built and its :class:`~chorus_worker.resources.Resources`
at startup; jobs read them through these functions, so the dict's ``Any`` stays here.
"""

from __future__ import annotations

from chorus_worker.resources import RESOURCES_KEY, SETTINGS_KEY, JobContext, Resources
from chorus_worker.settings import WorkerServiceSettings

__all__ = ["JobContext", "resources", "settings_of"]


def settings_of(ctx: JobContext) -> WorkerServiceSettings:
    """The settings the worker was built with."""
    settings = ctx[SETTINGS_KEY]
    assert isinstance(settings, WorkerServiceSettings)
    return settings


def resources(ctx: JobContext) -> Resources:
    """The clients opened at startup."""
    found = ctx[RESOURCES_KEY]
    assert isinstance(found, Resources)
    return found
