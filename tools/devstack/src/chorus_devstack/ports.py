"""Free loopback ports, never handed out twice by one process."""

from __future__ import annotations

import socket
import threading

__all__ = ["free_port", "port_accepts", "port_is_free"]

_given: set[int] = set()
_lock = threading.Lock()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free and that this process has not handed out before.

    The kernel picks ephemeral ports at random, so two parallel test runs do not collide;
    remembering what we gave out stops one run from reusing a port a child has not bound yet.
    """
    with _lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _given:
                _given.add(port)
                return port


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
