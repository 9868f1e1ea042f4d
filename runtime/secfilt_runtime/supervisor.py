"""The destination rules without a race, where no cgroup program can hold them (`secfilt` run
by a user who may not load cgroup BPF): a seccomp user-notification supervisor that performs
the calls itself.

The policy's filter sends connect, sendto with an address, sendmsg and sendmmsg to a listener
(policy.filter.build(supervised=True)). For each, a thread here copies the address, the data and
the control messages out of the caller's memory once, judges that copy (policy.decide), takes a
duplicate of the caller's socket (pidfd_getfd: the same open file, so the same socket) and
performs the call on the copy. What the caller's threads write into their memory afterwards
changes nothing: the kernel never reads it again. Blocking is the caller's own: the socket's
O_NONBLOCK and timeouts are shared; a worker thread waits per call, and the filter's
WAIT_KILLABLE_RECV keeps a signal from restarting a call that is being performed.

Left to the kernel (answered CONTINUE), when the caller is the one task of its thread group:
calls on sockets that are not IPv4/IPv6 (their addresses are not destinations), and stream
sends without MSG_FASTOPEN (TCP ignores their address: the destination was judged at connect).
The kernel looks the descriptor up again: another task sharing the caller's descriptor table
could have put an INET socket under the number meanwhile. So a caller with other threads gets
those calls performed too (a unix socket's as unixcalls says), and the filter refuses a
descriptor table shared beyond a thread group (policy.filter.shared_descriptors_rule).
Refused: the i386 entry's calls (32-bit layouts; the filter refuses i386 socketcall too),
which 64-bit programs never make.

A performed call differs from the kernel's own in what it shows of its sender: a unix peer's
SO_PEERCRED and SCM_CREDENTIALS name the supervisor's pid (the uid and gid are the same), and
explicit SCM_CREDENTIALS naming the caller's pid are refused with EPERM, unless the
supervisor is root.
"""

from __future__ import annotations

import _queue
import _signal
import contextlib
import errno
import os
import socket
import struct
import threading
from typing import TYPE_CHECKING

from . import kernel, signals, unixcalls
from .errors import warn
from .policy import decide, sockaddr, syscalls
from .policy.filter import HARDENING_RULE
from .policy.model import Policy

if TYPE_CHECKING:
    from collections.abc import Callable

NR_CONNECT, NR_SENDTO, NR_SENDMSG, NR_SENDMMSG = 42, 44, 46, 307  # x86_64
NAMES = {NR_CONNECT: "connect", NR_SENDTO: "sendto", NR_SENDMSG: "sendmsg",
         NR_SENDMMSG: "sendmmsg"}
MSG_FASTOPEN = 0x20000000
MSG_NOSIGNAL = 0x4000
INET = (socket.AF_INET, socket.AF_INET6)
STAT_THREADS = 17  # /proc/PID/stat's num_threads, counted from the field after the name
SOCKADDR_MAX = 128
DATA_MAX = 1 << 20      # a datagram is at most 64 KiB; a stream send may send less than asked
CONTROL_MAX = 128 * 1024
CHUNK = 128 * 1024      # what one RemoteReader.read covers (its MAX_PAGES)
UIO_MAXIOV = 1024
MSGHDR = struct.Struct("=Qi4xQQQQi4x")   # name, namelen, iov, iovlen, control, controllen, flags
MMSGHDR_SIZE = 64                        # msghdr, then msg_len and padding
IOVEC = struct.Struct("=QQ")


class Refused(Exception):
    """The call is answered with this errno, logged when it is a policy denial."""

    def __init__(self, err: int, rule: str = "", reason: str = "",
                 details: dict[str, object] | None = None) -> None:
        super().__init__(reason)
        self.err, self.rule, self.reason = err, rule, reason
        self.details = details or {}


def _left_to_kernel(n: kernel.SeccompNotif, family: int, kind: int) -> bool:
    """Need the kernel's own run of this call on a socket of this family and type not be
    judged? A socket that is not IPv4/IPv6 has no destination the rules are about (unix,
    netlink); TCP ignores a send's address without MSG_FASTOPEN (its destination was judged at
    connect)."""
    if family not in INET:
        return True
    return n.nr != NR_CONNECT and kind == socket.SOCK_STREAM and not _flags(n) & MSG_FASTOPEN


def _flags(n: kernel.SeccompNotif) -> int:
    # sendto(fd, buf, len, FLAGS, ..), sendmsg(fd, msg, FLAGS), sendmmsg(fd, vec, n, FLAGS)
    return n.args[2 if n.nr == NR_SENDMSG else 3] & 0xFFFFFFFF if n.nr != NR_CONNECT else 0


class Call:
    """How one call is performed on the supervisor's duplicate of the caller's socket, so that
    it does what the kernel would have done for the caller."""

    def __init__(self, n: kernel.SeccompNotif, caller: Caller) -> None:
        self.n, self.caller = n, caller
        self.inet = caller.family in INET
        self.unix = caller.family == socket.AF_UNIX
        self.asked = _flags(n)
        self.stream = caller.kind == socket.SOCK_STREAM
        # TCP ignores a send's address, unless MSG_FASTOPEN (then its destination)
        self.named = not (self.inet and self.stream and not self.asked & MSG_FASTOPEN)
        self.judged = self.inet and self.named
        # where the kernel raises SIGPIPE on a closed peer (a stream send; a seqpacket one gets
        # EPIPE alone): it must be the caller's, not ours
        self.piped = self.stream
        self.flags = self.asked | (MSG_NOSIGNAL if self.piped else 0)

    def place(self, address: bytes) -> bytes:
        if self.unix and unixcalls.named(address):
            return unixcalls.from_callers_place(self.n.pid, address)
        return address

    def data_length(self, asked: int) -> int:
        """How much of the caller's data to copy: a stream send may send less than asked;
        a message larger than DATA_MAX is refused, as no socket takes one that long."""
        if asked <= DATA_MAX:
            return asked
        if self.stream:
            return DATA_MAX
        raise Refused(errno.EMSGSIZE)

    def passed(self, control: bytes) -> contextlib.AbstractContextManager:
        if not (self.unix and control):
            return contextlib.nullcontext(_Verbatim(control))
        return unixcalls.PassedDescriptors(self.caller.pidfd, control)

    def after(self, result: int) -> int:
        if result == -errno.EPIPE and self.piped and not self.asked & MSG_NOSIGNAL:
            with contextlib.suppress(OSError):  # gone: nobody to signal
                kernel.pidfd_signal_thread(self.caller.pidfd, _signal.SIGPIPE)
        return result


class Caller:
    """The calling thread, held by a pidfd for the whole call (after a call that blocked, the
    caller may be gone and its pid another process's, never the pidfd's), and a duplicate of
    its socket, with that socket's family and type."""

    def __init__(self, pidfd: int, sock: socket.socket) -> None:
        self.pidfd, self.sock = pidfd, sock
        self.family = sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        self.kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)

    def close(self) -> None:
        self.sock.close()
        os.close(self.pidfd)


class _Verbatim:
    def __init__(self, control: bytes) -> None:
        self.control = control


class _Workers:
    """Threads that answer notifications: an idle one takes the next, else a new one starts
    (a call may block as long as the caller's socket makes it: a connect, a full buffer). Each
    stays for the next rather than end: starting a thread costs more than most calls."""

    def __init__(self, perform: Callable[[kernel.SeccompNotif, Caller], None]) -> None:
        self.perform = perform
        self.waiting = _queue.SimpleQueue()
        self.idle = 0
        self.lock = threading.Lock()

    def submit(self, notif: kernel.SeccompNotif, caller: Caller) -> None:
        with self.lock:
            start = self.idle == 0
            if not start:
                self.idle -= 1
        if start:
            threading.Thread(target=self._work, args=(notif, caller), daemon=True).start()
        else:
            self.waiting.put((notif, caller))

    def _work(self, notif: kernel.SeccompNotif, caller: Caller) -> None:
        while True:
            self.perform(notif, caller)
            with self.lock:
                self.idle += 1
            notif, caller = self.waiting.get()


class Supervisor:
    def __init__(self, listener: int, policy: Policy, log_path: str | None) -> None:
        self.listener = listener
        self.policy = policy
        self.log_fd = (os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o600) if log_path else None)
        self.reader = kernel.RemoteReader(CHUNK)
        self._reader_lock = threading.Lock()

    # --- the loop ------------------------------------------------------------------------

    def serve(self) -> None:
        """Receive until every process of the filter is gone (POLLHUP). A call the kernel may
        run is answered here; one to perform goes to a worker thread: a blocking connect must
        not hold the others."""
        import select

        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        workers = _Workers(self._perform)
        try:
            while True:
                events = poller.poll()
                if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events):
                    return
                try:
                    notif = kernel.seccomp_notif_recv(self.listener)
                except OSError as e:
                    if e.errno in (errno.EINTR, errno.ENOENT):
                        continue  # ENOENT: the caller died before we received it
                    raise
                try:
                    caller = self._route(notif)
                except (Refused, OSError) as e:
                    self._answer(notif, e)
                    continue
                except Exception as e:  # noqa: BLE001 - a fault of ours refuses, never hangs
                    self._answer(notif, self._failed(e))
                    continue
                if caller is None:
                    self._answer(notif, None)
                else:
                    workers.submit(notif, caller)
        finally:
            if self.log_fd is not None:
                os.close(self.log_fd)
                self.log_fd = None

    def _perform(self, notif: kernel.SeccompNotif, caller: Caller) -> None:
        try:
            outcome: int | Exception = self._perform_on(notif, caller)
        except (Refused, OSError) as e:
            outcome = e
        except Exception as e:  # noqa: BLE001 - the caller would wait for ever, the worker die
            outcome = self._failed(e)
        finally:
            caller.close()
        self._answer(notif, outcome)

    def _failed(self, error: Exception) -> Refused:
        """A call the supervisor failed to serve (a fault of its own): refused, as the tracer
        refuses one it failed to judge, and logged with what went wrong."""
        return Refused(self.policy.errno, HARDENING_RULE,
                       f"the supervisor failed: {type(error).__name__}: {error}")

    def _answer(self, notif: kernel.SeccompNotif, outcome: int | Exception | None) -> None:
        """Reply with the call's result (>= 0 or -errno), a refusal or error, or (None) let the
        kernel run it."""
        refused = outcome if isinstance(outcome, Refused) and outcome.rule else None
        if isinstance(outcome, Refused):
            outcome = -outcome.err
        elif isinstance(outcome, OSError):  # the caller vanished or its memory went away
            outcome = -(outcome.errno or errno.EFAULT)
        with contextlib.suppress(OSError):  # ENOENT: the caller is gone
            if outcome is None:
                kernel.seccomp_notif_send(self.listener, notif.id,
                                          flags=kernel.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
            elif outcome < 0:
                kernel.seccomp_notif_send(self.listener, notif.id, error=-outcome)
            else:
                kernel.seccomp_notif_send(self.listener, notif.id, val=outcome)
        if refused is not None:
            # after the answer: a fault while logging must not leave the caller waiting
            try:
                self._log(notif, refused)
            except Exception as e:  # noqa: BLE001 - the refusal stands; say why it has no line
                warn(f"the supervisor could not log a refusal: {type(e).__name__}: {e}")

    # --- one call ------------------------------------------------------------------------

    def _route(self, n: kernel.SeccompNotif) -> Caller | None:
        """The caller and its socket when the call must be performed, None when the kernel may
        run the call itself. Never blocks."""
        if n.arch != syscalls.AUDIT_ARCH_X86_64 or n.nr not in NAMES:
            raise Refused(self.policy.errno, decide.destination_rule(self.policy),
                          "32-bit calls that carry a destination are not supervised")
        fd = n.args[0] & 0xFFFFFFFF
        try:
            pidfd = kernel.pidfd_open_thread(n.pid)
        except OSError:
            raise Refused(errno.ESRCH) from None
        caller = None
        try:
            caller = Caller(pidfd, self._socket(pidfd, fd))
            if not _left_to_kernel(n, caller.family, caller.kind) or not self._alone(n):
                # not alone: another task may put another socket under this number before
                # the kernel looks it up again
                return caller
            # alone, the caller's descriptor table holds still until it returns: what it
            # holds now is what the kernel will find
            caller.sock.close()
            caller = Caller(pidfd, self._socket(pidfd, fd))
            if not _left_to_kernel(n, caller.family, caller.kind):
                return caller
        except BaseException:
            if caller is not None:
                caller.sock.close()
            os.close(pidfd)
            raise
        caller.close()
        return None

    def _perform_on(self, n: kernel.SeccompNotif, caller: Caller) -> int:
        sock = caller.sock
        call = Call(n, caller)
        if n.nr == NR_CONNECT:
            address = call.place(self._address(n, n.args[1], n.args[2], "connect", call.inet))
            self._still_waiting(n)
            return kernel.raw_connect(sock.fileno(), address)
        if n.nr == NR_SENDTO:
            address = (call.place(self._address(n, n.args[4], n.args[5], "send", call.judged))
                       if call.named else None)
            data = self._read(n, n.args[1], call.data_length(n.args[2]), "buffer")
            self._still_waiting(n)
            return call.after(kernel.raw_sendmsg(sock.fileno(), address, data, b"",
                                                 call.flags))
        if n.nr == NR_SENDMSG:
            name, data, control = self._message(n, n.args[1], call)
            with call.passed(control) as passed:
                self._still_waiting(n)
                return call.after(kernel.raw_sendmsg(sock.fileno(), name, data,
                                                     passed.control, call.flags))
        return self._sendmmsg(n, sock.fileno(), call)

    def _sendmmsg(self, n: kernel.SeccompNotif, fd: int, call: Call) -> int:
        vec, count = n.args[1], min(n.args[2] & 0xFFFFFFFF, UIO_MAXIOV)
        # each message's count goes to its msg_len, after a send that may have blocked: by
        # then the pid may be another process's, never this descriptor's memory
        mem = os.open(f"/proc/{n.pid}/mem", os.O_WRONLY | os.O_CLOEXEC)
        try:
            self._still_waiting(n)
            return self._send_each(n, fd, call, mem, vec, count)
        finally:
            os.close(mem)

    def _send_each(self, n: kernel.SeccompNotif, fd: int, call: Call, mem: int, vec: int,
                   count: int) -> int:
        sent = 0
        for i in range(count):
            entry = vec + i * MMSGHDR_SIZE
            try:
                name, data, control = self._message(n, entry, call)
            except Refused:
                if sent:
                    break  # as the kernel: the count so far, the error on the next call
                raise
            with call.passed(control) as passed:
                self._still_waiting(n)
                result = call.after(kernel.raw_sendmsg(fd, name, data, passed.control,
                                                       call.flags))
            if result < 0:
                if sent:
                    break
                return result
            try:
                os.pwrite(mem, struct.pack("=I", result), entry + MSGHDR.size)
            except OSError:  # as the kernel's put_user: sent, not counted
                if sent:
                    break
                return -errno.EFAULT
            sent += 1
        return sent

    def _alone(self, n: kernel.SeccompNotif) -> bool:
        """Is the caller the one task of its thread group (so the one task with its descriptor
        table: policy.filter refuses a table shared beyond the group)? While it waits here,
        nothing can start another."""
        try:
            fd = os.open(f"/proc/{n.pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
        self._still_waiting(n)  # so the pid was still the caller's
        return stat.rpartition(b")")[2].split()[STAT_THREADS] == b"1"

    def _socket(self, pidfd: int, fd: int) -> socket.socket:
        """The caller's socket `fd`, duplicated into ours (Refused when it is none)."""
        try:
            dup = kernel.pidfd_getfd(pidfd, fd)
        except OSError as e:
            raise Refused(e.errno or errno.EBADF) from None
        try:
            return socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            raise Refused(errno.ENOTSOCK) from None

    def _still_waiting(self, n: kernel.SeccompNotif) -> None:
        # the pid we read from still names the caller only while it waits on this notification
        if not kernel.seccomp_notif_id_valid(self.listener, n.id):
            raise Refused(errno.EINTR)

    def _read(self, n: kernel.SeccompNotif, addr: int, length: int, what: str) -> bytes:
        parts: list[bytes] = []
        with self._reader_lock:
            while length > 0:
                want = min(length, CHUNK)
                got = self.reader.read(n.pid, addr, want)
                if got < want:
                    raise Refused(errno.EFAULT, reason=f"{what} is not readable")
                parts.append(self.reader.buf.raw[:got])
                addr, length = addr + got, length - got
        return b"".join(parts)

    def _address(self, n: kernel.SeccompNotif, ptr: int, length: int, call: str,
                 judged: bool) -> bytes:
        """The address, copied once; judged when it is a destination."""
        length = length & 0xFFFFFFFF
        if length > SOCKADDR_MAX or length & 0x80000000:
            raise Refused(errno.EINVAL)
        raw = self._read(n, ptr, length, "the address")
        if not judged:
            return raw
        dest = sockaddr.parse(raw, length, call)
        verdict = decide.destination(self.policy, dest)
        if not verdict.allowed:
            raise Refused(self.policy.errno, verdict.rule, verdict.reason,
                          {"address": str(dest)})
        return raw

    def _message(self, n: kernel.SeccompNotif, addr: int, call: Call
                 ) -> tuple[bytes | None, bytes, bytes]:
        name_ptr, namelen, iov, iovlen, control_ptr, controllen, _ = MSGHDR.unpack(
            self._read(n, addr, MSGHDR.size, "the msghdr"))
        if namelen < 0:
            raise Refused(errno.EINVAL)
        name = (self._address(n, name_ptr, min(namelen, SOCKADDR_MAX), "send", call.judged)
                if name_ptr and namelen and call.named else None)
        if name is not None:
            name = call.place(name)
        if iovlen > UIO_MAXIOV:
            raise Refused(errno.EMSGSIZE)
        vec = self._read(n, iov, iovlen * IOVEC.size, "the iovec") if iovlen else b""
        pieces = list(IOVEC.iter_unpack(vec))
        room = call.data_length(sum(length for _, length in pieces))
        chunks: list[bytes] = []
        for base, length in pieces:
            take = min(length, room)
            chunks.append(self._read(n, base, take, "a buffer"))
            room -= take
        control = b""
        if control_ptr and controllen:
            if controllen > CONTROL_MAX:
                raise Refused(errno.ENOBUFS)
            control = self._read(n, control_ptr, controllen, "the control messages")
            if call.inet:
                self._judge_control(control)
        return name, b"".join(chunks), control

    def _judge_control(self, control: bytes) -> None:
        messages = sockaddr.control_messages(control)
        if messages is None:
            raise Refused(errno.EINVAL)
        for level, type_ in messages:
            verdict = decide.control_message(self.policy, level, type_)
            if not verdict.allowed:
                raise Refused(self.policy.errno, verdict.rule, verdict.reason,
                              {"level": level, "cmsg": type_})

    def _log(self, n: kernel.SeccompNotif, refused: Refused) -> None:
        if self.log_fd is None:
            return
        from .tracer.judge import Decision
        from .tracer.log import line
        from .tracer.loop import tgid_of

        tgid = tgid_of(n.pid)
        decision = Decision(False, refused.err, refused.rule, refused.reason, True,
                            syscall=NAMES.get(n.nr, str(n.nr)), details=refused.details)
        with contextlib.suppress(OSError):
            os.write(self.log_fd, line(None, tgid, n.pid, n.arch, decision, False).encode())


def start(handoff, pid: int, watch_fd: int, policy: Policy, log_path: str | None
          ) -> threading.Thread:
    """In the tracer's process: take the listener from `pid` (which publishes it in `handoff`
    right after loading its filters, and waits), then serve it in a daemon thread."""

    def run() -> None:
        _signal.pthread_sigmask(_signal.SIG_BLOCK, signals.named())  # EINTR-free calls
        try:
            listener = handoff.take(pid, watch_fd)
        except Exception as e:  # the process is then killed by the tracer's exit
            warn(f"cannot take the seccomp listener: {e}")
            handoff.close()
            return
        if listener is None:
            handoff.close()
            return
        handoff.release()
        handoff.close()
        try:
            Supervisor(listener, policy, log_path).serve()
        finally:
            os.close(listener)

    thread = threading.Thread(target=run, name="secfilt-supervisor", daemon=True)
    thread.start()
    return thread
