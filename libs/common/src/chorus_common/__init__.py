"""Infrastructure shared by the Chorus services.

Each concept lives in its own module (``settings``, ``logs``, ``request_context``,
``http_metrics``, ``health``, ``lifecycle``, ``errors``, ``redis_client``, ``events``,
``database``, ``tokens``, ``app``, ``server``); import from the module that names it.
This package never imports a service.
"""
