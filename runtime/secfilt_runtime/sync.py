"""The message channel between the runtime and the processes it forks (stage1, the init).

A SOCK_SEQPACKET pair keeps message boundaries; each message is one JSON object with a "type".
Both ends are close-on-exec, so the runtime reads end-of-file exactly when the init has executed
the container process (or died): that is how a successful execve is observed.
"""

from __future__ import annotations

import json
import os
import select
import socket
from collections.abc import Callable

from .errors import ContainerError

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_MAX_MESSAGE = 1 << 20
_POLL_SECONDS = 0.2


class ChildVanished(ContainerError):
    """The process at the other end closed the channel without reporting why."""


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # Called while waiting for a message; raises to give up (the runtime was told to stop).
        self.while_waiting: Callable[[], None] | None = None

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, type_: str, fds: list[int] | None = None, **fields: Any) -> None:
        data = json.dumps({"type": type_, **fields}).encode()
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.send(data)

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None at end-of-file. Passed descriptors are in msg["fds"]."""
        if self.while_waiting is not None:
            while not select.select([self.sock], [], [], _POLL_SECONDS)[0]:
                self.while_waiting()
        data, fds, flags, _ = socket.recv_fds(self.sock, _MAX_MESSAGE, 4)
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for fd in fds:
                os.close(fd)
            raise ContainerError("a message from the container's setup was truncated")
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        msg = json.loads(data)
        for fd in fds:
            os.set_inheritable(fd, False)
        msg["fds"] = fds
        return msg

    def expect(self, type_: str, who: str) -> dict[str, Any]:
        """Receive a message of the given type; an error message or EOF becomes ContainerError."""
        msg = self.recv()
        if msg is None:
            raise ChildVanished(f"{who} exited during setup without a report")
        if msg["type"] == "error":
            raise ContainerError(msg["message"])
        if msg["type"] != type_:
            raise ContainerError(f"{who} sent {msg['type']!r} where {type_!r} was expected")
        return msg

    def adopt(self, sock: socket.socket) -> None:
        """Talk over `sock` from now on (the init's connection from `start`): whoever holds
        this Channel, error reporting included, follows."""
        self.sock.close()
        self.sock = sock

    def close(self) -> None:
        self.sock.close()
