"""The message channel between the runtime and the processes it forks (stage1, the init).

A SOCK_SEQPACKET pair keeps message boundaries; each message is one JSON object with a "type".
Both ends are close-on-exec, so the runtime reads end-of-file exactly when the init has executed
the container process (or died): that is how a successful execve is observed.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from .errors import ContainerError

_MAX_MESSAGE = 65536


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, type_: str, **fields: Any) -> None:
        self.sock.send(json.dumps({"type": type_, **fields}).encode())

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None at end-of-file."""
        data = self.sock.recv(_MAX_MESSAGE)
        if not data:
            return None
        return json.loads(data)

    def expect(self, type_: str, who: str) -> dict[str, Any]:
        """Receive a message of the given type; an error message or EOF becomes ContainerError."""
        msg = self.recv()
        if msg is None:
            raise ContainerError(f"{who} exited during setup without a report")
        if msg["type"] == "error":
            raise ContainerError(msg["message"])
        if msg["type"] != type_:
            raise ContainerError(f"{who} sent {msg['type']!r} where {type_!r} was expected")
        return msg

    def close(self) -> None:
        self.sock.close()
