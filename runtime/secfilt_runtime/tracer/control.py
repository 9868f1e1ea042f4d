"""The control socket of a detached tracer: `add` asks it to seize one more pid (a process
`exec` starts in the container). A root-only unix socket in the container's state directory;
a peer that is not root is refused.

The listening thread cannot seize: ptrace requests must come from the thread that will serve
the stops. It queues the request and interrupts the serving thread's waitpid with SIGUSR1
(repeated until served: the signal may land just before the thread blocks again).
"""

from __future__ import annotations

import _signal
import contextlib
import os
import socket
import struct
import threading
from collections import deque

from .. import jsonio
from ..errors import ContainerError
from ..records import field, record

WAKE_SIGNAL = _signal.SIGUSR1
_TIMEOUT = 10.0


@record
class _Request:
    pid: int
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class ControlServer:
    def __init__(self, path: str, seize) -> None:  # noqa: ANN001 - Callable[[int], None]
        self.path = path
        self._seize = seize
        self._queue: deque[_Request] = deque()
        self._main = threading.main_thread().ident
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        old = os.umask(0o077)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.sock.listen(8)
        _signal.signal(WAKE_SIGNAL, lambda *_: None)  # a handler, so waitpid gets EINTR

    def start(self) -> None:
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.sock.close()

    def drain(self) -> None:
        """In the serving thread: seize what was asked for."""
        while self._queue:
            req = self._queue.popleft()
            try:
                self._seize(req.pid)
            except OSError as e:
                req.error = f"cannot seize {req.pid}: {e.strerror}"
            req.done.set()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError, ValueError):
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        msg = jsonio.loads(conn.recv(4096) or b"{}")
        if uid != 0:
            conn.send(jsonio.dumps({"error": "only root may add processes"}).encode())
            return
        pid = msg.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            conn.send(jsonio.dumps({"error": f"pid: not a process id: {pid!r}"}).encode())
            return
        req = _Request(pid)
        self._queue.append(req)
        while not req.done.wait(0.02):
            _signal.pthread_kill(self._main, WAKE_SIGNAL)  # type: ignore[arg-type]
        conn.send(jsonio.dumps({"error": req.error} if req.error else {"ok": True}).encode())


def request_add(path: str, pid: int) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as s:
        s.settimeout(_TIMEOUT)
        try:
            s.connect(path)
            s.send(jsonio.dumps({"pid": pid}).encode())
            reply = jsonio.loads(s.recv(4096) or b"{}")
        except (OSError, ValueError) as e:
            raise ContainerError(f"tracer at {path}: {e}") from None
    if not reply.get("ok"):
        raise ContainerError(f"tracer at {path}: {reply.get('error') or 'no answer'}")
