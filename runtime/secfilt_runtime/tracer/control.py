"""The control socket of a detached tracer: `add` asks it to seize one more pid (a process
`exec` starts in the container). A root-only unix socket in the container's state directory;
a peer that is not root is refused.

The listening thread cannot seize: ptrace requests must come from the thread that will serve
the stops. It queues the request and interrupts the serving thread's waitpid with SIGUSR1
(repeated until served: the signal may land just before the thread blocks again).

The socket is bound and listening before the tracer reports that it has seized the init (an
`exec` may connect at once: the kernel queues it); the thread that answers, and `threading`
with it (~10 ms of imports here), come only after the report, off the runtime's wait.
"""

from __future__ import annotations

import _signal
import _thread
import contextlib
import os
from collections import deque

from .. import jsonio
from ..errors import ContainerError
from ..records import record
from ..sync import accept, peer_uid, seqpacket_socket

# annotations only
TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    import threading

WAKE_SIGNAL = _signal.SIGUSR1
_TIMEOUT = 10.0


@record
class _Request:
    pid: int
    done: threading.Event
    error: str | None = None


class ControlServer:
    def __init__(self, path: str, seize) -> None:  # noqa: ANN001 - Callable[[int], None]
        self.path = path
        self._seize = seize
        self._queue: deque[_Request] = deque()
        self._main = _thread.get_ident()  # the serving thread builds the server
        self.sock = seqpacket_socket()
        old = os.umask(0o077)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.sock.listen(8)
        _signal.signal(WAKE_SIGNAL, lambda *_: None)  # a handler, so waitpid gets EINTR

    def start(self) -> None:
        import threading

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
                conn = accept(self.sock)
            except OSError:
                return
            try:
                with contextlib.suppress(OSError, ValueError):
                    self._one(conn)
            finally:
                conn.close()

    def _one(self, conn: _socket.socket) -> None:
        uid = peer_uid(conn)
        msg = jsonio.loads(conn.recv(4096) or b"{}")
        if uid != 0:
            conn.send(jsonio.dumps({"error": "only root may add processes"}).encode())
            return
        pid = msg.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            conn.send(jsonio.dumps({"error": f"pid: not a process id: {pid!r}"}).encode())
            return
        from threading import Event  # loaded by start(), which runs this thread

        req = _Request(pid, Event())
        self._queue.append(req)
        while not req.done.wait(0.02):
            _signal.pthread_kill(self._main, WAKE_SIGNAL)  # type: ignore[arg-type]
        conn.send(jsonio.dumps({"error": req.error} if req.error else {"ok": True}).encode())


def request_add(path: str, pid: int) -> None:
    s = seqpacket_socket()
    try:
        s.settimeout(_TIMEOUT)
        s.connect(path)
        s.send(jsonio.dumps({"pid": pid}).encode())
        reply = jsonio.loads(s.recv(4096) or b"{}")
    except (OSError, ValueError) as e:
        raise ContainerError(f"tracer at {path}: {e}") from None
    finally:
        s.close()
    if not reply.get("ok"):
        raise ContainerError(f"tracer at {path}: {reply.get('error') or 'no answer'}")
