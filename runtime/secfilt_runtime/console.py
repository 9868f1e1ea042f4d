"""The runtime's side of a container terminal: copy between our stdio and the pty master,
keep the window size in step, and put our own terminal in raw mode meanwhile."""

from __future__ import annotations

import fcntl
import os
import termios
import threading
import tty

_WINSIZE_BYTES = 8


class Console:
    def __init__(self, master: int) -> None:
        self.master = master
        self._saved: list | None = None
        self._output: threading.Thread | None = None

    def start(self) -> None:
        if os.isatty(0):
            self._saved = termios.tcgetattr(0)
            tty.setraw(0)
        self.resize()
        # The input side gets a descriptor of its own: it may sit in read(0) after close(),
        # and must never write to whatever file reuses the master's number then.
        threading.Thread(target=self._copy, args=(0, os.dup(self.master)), daemon=True).start()
        self._output = threading.Thread(target=self._copy, args=(self.master, 1), daemon=True)
        self._output.start()

    def resize(self) -> None:
        """Give the container's terminal the size of ours (on start and on SIGWINCH)."""
        for fd in (0, 1, 2):
            if os.isatty(fd):
                size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * _WINSIZE_BYTES)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
                return

    @staticmethod
    def _copy(src: int, dst: int) -> None:
        """Copy until EOF, or EIO on the master once the last holder of the slave is gone. When
        the destination fails (our reader went away), keep draining the source: a container
        blocked on a full pty would never exit."""
        sink_ok = True
        try:
            while data := os.read(src, 65536):
                view = memoryview(data)
                while view and sink_ok:
                    try:
                        view = view[os.write(dst, view):]
                    except OSError:
                        sink_ok = False
        except OSError:
            pass

    def close(self) -> None:
        """After the container exited: let the output drain, restore our terminal."""
        if self._output is not None:
            self._output.join(timeout=2)
        if self._saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
        os.close(self.master)


def send_to_socket(path: str, master: int) -> None:
    """Hand the pty master to --console-socket as runc does: one message on a unix stream
    socket carrying the descriptor (SCM_RIGHTS) and the terminal's name."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            socket.send_fds(s, [b"/dev/ptmx"], [master])
    except OSError as e:
        from .errors import ContainerError

        raise ContainerError(f"--console-socket {path}: {e.strerror or e}") from None
