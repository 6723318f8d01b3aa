"""One Redis pub/sub connection as an asyncio protocol, and nothing that hides its failures.

redis-py's ``PubSub`` reconnects and resubscribes on its own, silently: events published
during the gap are lost without anyone knowing, which is how "deaf listeners" happen.
This connection does the opposite. It is a bare RESP protocol (hiredis parses) whose
loss is reported at once, so :mod:`hub` can rebuild it, resubscribe every channel and
replay what the gap swallowed from the streams. Pushes are handed to callbacks from
``data_received`` — no task switch between the socket and the clients' sockets; the
messages of one read go together, in order, so a burst fans out as one write per client —
and
``SUBSCRIBE``/``UNSUBSCRIBE`` are written synchronously, so their order on the wire is
the order in which the hub decided them.

Two dialects: classic pub/sub (``SUBSCRIBE``, ``message``) on one Redis, and sharded
pub/sub (``SSUBSCRIBE``, ``smessage``) on a node of a Redis Cluster, where each command
names one channel (channels of different slots may not share a command), a channel whose
slot the node does not own is refused with ``MOVED`` (reported through ``on_error``),
and a ``sunsubscribe`` the hub did not ask for means the slot moved away.

The handshake asks ``ROLE``: a connection is only ever made to a primary, so a stale
Sentinel answer or slot map that points at a replica is refused and asked again.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import unquote, urlparse

import hiredis

__all__ = ["NotPrimaryError", "PubSubConnection", "RedisAddress", "open_pubsub"]

#: The ``(channel, payload)`` of each message of one read, in order (never empty).
MessagesHandler = Callable[[list[tuple[bytes, bytes]]], None]
#: ``(channel, subscribed)``: the server confirmed a SUBSCRIBE (True) or UNSUBSCRIBE —
#: or, sharded, unsubscribed the connection itself because the slot moved.
AckHandler = Callable[[bytes, bool], None]
#: An error reply to a (S)SUBSCRIBE, e.g. ``MOVED 3999 127.0.0.1:7002``.
ErrorHandler = Callable[[str], None]
#: The connection is gone (with the error, if any).
LostHandler = Callable[[Exception | None], None]


class NotPrimaryError(ConnectionError):
    """The server answered ``ROLE`` with something other than ``master``."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where and how to connect, from ``REDIS_URL`` (``redis://``, ``rediss://``, ``unix://``)."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """Parse a Redis URL (the database number is irrelevant to pub/sub)."""
        parsed = urlparse(url)
        username = unquote(parsed.username) if parsed.username else None
        password = unquote(parsed.password) if parsed.password else None
        if parsed.scheme == "unix":
            return cls(path=unquote(parsed.path), username=username, password=password)
        if parsed.scheme not in {"redis", "rediss"}:
            msg = "REDIS_URL must be redis://, rediss:// or unix://"
            raise ValueError(msg)
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 6379,
            username=username,
            password=password,
            tls=parsed.scheme == "rediss",
        )

    def __str__(self) -> str:
        return self.path or f"{self.host}:{self.port}"


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class PubSubConnection(asyncio.Protocol):
    """A RESP2 connection in subscriber mode (classic or sharded)."""

    def __init__(
        self,
        *,
        on_messages: MessagesHandler,
        on_ack: AckHandler,
        on_lost: LostHandler,
        on_error: ErrorHandler | None = None,
        sharded: bool = False,
    ) -> None:
        self._on_messages = on_messages
        self._on_ack = on_ack
        self._on_lost = on_lost
        self._on_error = on_error
        self.sharded = sharded
        self._subscribe_command = b"SSUBSCRIBE" if sharded else b"SUBSCRIBE"
        self._unsubscribe_command = b"SUNSUBSCRIBE" if sharded else b"UNSUBSCRIBE"
        self._message = b"smessage" if sharded else b"message"
        self._subscribed = b"ssubscribe" if sharded else b"subscribe"
        self._unsubscribed = b"sunsubscribe" if sharded else b"unsubscribe"
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        #: Replies to the handshake commands (AUTH, CLIENT SETNAME, ROLE) still expected.
        self._handshake_left = 0
        self._handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lost = False

    @property
    def open(self) -> bool:
        """True from the handshake until the connection is lost or closed."""
        return self._transport is not None and not self._lost and self._handshake.done()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport (the handshake is written by :func:`open_pubsub`)."""
        self._transport = cast(asyncio.Transport, transport)

    def start(self, *commands: tuple[bytes, ...]) -> asyncio.Future[None]:
        """Write handshake commands, then ``ROLE``; the future resolves when all answered
        and the server is a primary."""
        commands = (*commands, (b"ROLE",))
        self._handshake_left = len(commands)
        for parts in commands:
            self._write(_command(*parts))
        return self._handshake

    def _handshake_reply(self, reply: object) -> bool:
        """One reply to AUTH / CLIENT SETNAME / ROLE; False (and the connection dropped) on
        an error or a server that is not a primary."""
        self._handshake_left -= 1
        error: Exception | None = None
        if self._handshake_left == 0:  # ROLE's answer; a server that refuses it (an ACL
            # without ROLE, a managed service) cannot be checked, and is trusted.
            if isinstance(reply, list) and reply and reply[0] != b"master":
                error = NotPrimaryError(f"not a primary (ROLE says {reply[0]!r})")
        elif isinstance(reply, hiredis.ReplyError):
            error = ConnectionError(str(reply))
        if error is not None:
            if not self._handshake.done():
                self._handshake.set_exception(error)
            self.abort()
            return False
        if self._handshake_left == 0 and not self._handshake.done():
            self._handshake.set_result(None)
        return True

    def data_received(self, data: bytes) -> None:
        """Parse every complete reply and hand it on: messages together, acks in between."""
        reader = self._reader
        reader.feed(data)
        messages: list[tuple[bytes, bytes]] = []
        while True:
            reply = reader.gets()
            if reply is False:
                break
            if self._handshake_left:
                if not self._handshake_reply(reply):
                    return
                continue
            if isinstance(reply, hiredis.ReplyError):
                if messages:
                    self._on_messages(messages)
                    messages = []
                if self._on_error is not None:
                    self._on_error(str(reply))
                continue
            if not isinstance(reply, list) or len(reply) < 3:
                continue
            kind = reply[0]
            if kind == self._message:
                messages.append((reply[1], reply[2]))
                continue
            if kind not in (self._subscribed, self._unsubscribed):
                continue
            if messages:  # what came before an ack is handed on before it
                self._on_messages(messages)
                messages = []
            self._on_ack(reply[1], kind == self._subscribed)
        if messages:
            self._on_messages(messages)

    def connection_lost(self, exc: Exception | None) -> None:
        """Report the loss once."""
        if self._lost:
            return
        self._lost = True
        if not self._handshake.done():
            self._handshake.set_exception(exc or ConnectionError("connection closed"))
        self._on_lost(exc)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._lost:
            self._transport.write(data)

    def subscribe(self, *channels: bytes) -> None:
        """Write ``(S)SUBSCRIBE`` (confirmations arrive through ``on_ack``).

        Sharded, one command per channel: a command may only name channels of one slot.
        """
        if not channels:
            return
        if self.sharded:
            self._write(b"".join(_command(self._subscribe_command, c) for c in channels))
        else:
            self._write(_command(self._subscribe_command, *channels))

    def unsubscribe(self, *channels: bytes) -> None:
        """Write ``(S)UNSUBSCRIBE``."""
        if not channels:
            return
        if self.sharded:
            self._write(b"".join(_command(self._unsubscribe_command, c) for c in channels))
        else:
            self._write(_command(self._unsubscribe_command, *channels))

    def abort(self) -> None:
        """Drop the connection now (``connection_lost`` follows)."""
        if self._transport is not None:
            self._transport.abort()


async def open_pubsub(
    address: RedisAddress,
    *,
    client_name: str,
    connect_timeout: float,
    on_messages: MessagesHandler,
    on_ack: AckHandler,
    on_lost: LostHandler,
    on_error: ErrorHandler | None = None,
    sharded: bool = False,
) -> PubSubConnection:
    """Connect, authenticate, name the connection and check it reaches a primary; raises
    on any failure."""
    loop = asyncio.get_running_loop()

    def factory() -> PubSubConnection:
        return PubSubConnection(
            on_messages=on_messages,
            on_ack=on_ack,
            on_lost=on_lost,
            on_error=on_error,
            sharded=sharded,
        )

    async def connect() -> PubSubConnection:
        if address.path is not None:
            _, proto = await loop.create_unix_connection(factory, address.path)
        else:
            context = ssl.create_default_context() if address.tls else None
            _, proto = await loop.create_connection(
                factory, address.host, address.port, ssl=context
            )
        commands: list[tuple[bytes, ...]] = []
        if address.password is not None:
            user = (address.username.encode(),) if address.username is not None else ()
            commands.append((b"AUTH", *user, address.password.encode()))
        commands.append((b"CLIENT", b"SETNAME", client_name.encode()))
        try:
            await proto.start(*commands)
        except BaseException:
            proto.abort()
            raise
        return proto

    # In this task, not in wait_for's inner one: a cancel (the hub stopping) reaches the
    # connect at once instead of waiting for a second task to notice it.
    async with asyncio.timeout(connect_timeout):
        return await connect()
