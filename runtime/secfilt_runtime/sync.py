"""The message channel between the runtime and the processes it forks (stage1, the init).

A SOCK_SEQPACKET pair keeps message boundaries; each message is one JSON object with a "type".
Both ends are close-on-exec, so the runtime reads end-of-file exactly when the init has executed
the container process (or died): that is how a successful execve is observed.
"""

from __future__ import annotations

# _socket is the C module under socket.py, whose socket class derives from its own: the
# channel needs socketpair, sendmsg, recvmsg and accept, and socket.py would add ~5 ms to every
# run and start here (selectors, array, the IntEnum tables it builds). Sockets from either
# module work as a Channel.
import _socket
import os
import select
import struct

from . import jsonio
from .errors import ContainerError

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_MAX_MESSAGE = 1 << 20
_POLL_SECONDS = 0.2
_MAX_FDS = 4
_INT = struct.calcsize("i")


class ChildVanished(ContainerError):
    """The process at the other end closed the channel without reporting why."""


def seqpacket_socket() -> _socket.socket:
    """An AF_UNIX SOCK_SEQPACKET socket, close-on-exec (start.sock: bound by create,
    connected to by start)."""
    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)


def accept(listener: _socket.socket) -> _socket.socket:
    """socket.socket.accept: the connection, close-on-exec (accept4 with SOCK_CLOEXEC)."""
    fd, _ = listener._accept()
    return _socket.socket(fileno=fd)


def peer_uid(conn: _socket.socket) -> int:
    """The uid of the process at the other end of a unix socket, as it connected."""
    cred = struct.Struct("3i")  # struct ucred: pid, uid, gid
    return cred.unpack(conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, cred.size))[1]


def _send_fds(sock: _socket.socket, data: bytes, fds: list[int]) -> None:
    """socket.send_fds."""
    sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                           struct.pack(f"{len(fds)}i", *fds))])


def _recv_fds(sock: _socket.socket) -> tuple[bytes, list[int], int]:
    """socket.recv_fds: the data, the descriptors passed with it, and recvmsg's flags."""
    data, ancdata, flags, _ = sock.recvmsg(_MAX_MESSAGE, _socket.CMSG_LEN(_MAX_FDS * _INT))
    fds: list[int] = []
    for level, type_, payload in ancdata:
        if level == _socket.SOL_SOCKET and type_ == _socket.SCM_RIGHTS:
            whole = len(payload) - len(payload) % _INT  # as recv_fds: no partial int
            fds += struct.unpack(f"{whole // _INT}i", payload[:whole])
    return data, fds, flags


class Channel:
    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        # Called while waiting for a message; raises to give up (the runtime was told to stop).
        self.while_waiting: Callable[[], None] | None = None

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)  # close-on-exec
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, type_: str, fds: list[int] | None = None, **fields: Any) -> None:
        data = jsonio.dumps({"type": type_, **fields}).encode()
        if fds:
            _send_fds(self.sock, data, fds)
        else:
            self.sock.send(data)

    def send_go(self) -> None:
        """Tell a stage1 to proceed. One already gone (killed as it joined a cgroup whose limit
        its set-up cannot meet) is not an error here: the `expect` that follows says why."""
        try:
            self.send("go")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None at end-of-file. Passed descriptors are in msg["fds"]."""
        if self.while_waiting is not None:
            while not select.select([self.sock], [], [], _POLL_SECONDS)[0]:
                self.while_waiting()
        data, fds, flags = _recv_fds(self.sock)
        if flags & (_socket.MSG_TRUNC | _socket.MSG_CTRUNC):
            for fd in fds:
                os.close(fd)
            raise ContainerError("a message from the container's setup was truncated")
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        msg = jsonio.loads(data)
        for fd in fds:
            os.set_inheritable(fd, False)
        msg["fds"] = fds
        return msg

    def expect(self, type_: str, who: str) -> dict[str, Any]:
        """Receive a message of the given type; an error message or EOF becomes ContainerError."""
        try:
            msg = self.recv()
        except ConnectionResetError:
            # it exited with our last message unread (never an end-of-file: `start` takes that
            # for a successful execve)
            msg = None
        if msg is None:
            raise ChildVanished(f"{who} exited during setup without a report")
        if msg["type"] == "error":
            raise ContainerError(msg["message"])
        if msg["type"] != type_:
            raise ContainerError(f"{who} sent {msg['type']!r} where {type_!r} was expected")
        return msg

    def adopt(self, sock: _socket.socket) -> None:
        """Talk over `sock` from now on (the init's connection from `start`): whoever holds
        this Channel, error reporting included, follows."""
        self.sock.close()
        self.sock = sock

    def close(self) -> None:
        self.sock.close()
