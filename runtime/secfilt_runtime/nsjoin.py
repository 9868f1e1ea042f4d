"""Joining the namespaces of a running container's init (exec, and the hooks that run in the
container): open /proc/<init>/ns/* in the runtime, check the init is still the one recorded
(its pid could have been reused between the state read and the opens), setns in a child.

The user namespace goes first: the others are owned by it, and joining it gives the
capabilities setns needs for them. pid and time namespaces apply to the children of the
joining process only: whoever joins must fork once more.
"""

from __future__ import annotations

import os

from . import kernel
from .errors import ContainerError
from .records import record
from .state import proc_start_time
from .waitstatus import exit_code

# /proc/PID/ns names, in join order, with their clone flags
ORDER = (("user", kernel.CLONE_NEWUSER), ("ipc", kernel.CLONE_NEWIPC),
         ("uts", kernel.CLONE_NEWUTS), ("net", kernel.CLONE_NEWNET),
         ("pid", kernel.CLONE_NEWPID), ("time", kernel.CLONE_NEWTIME),
         ("cgroup", kernel.CLONE_NEWCGROUP), ("mnt", kernel.CLONE_NEWNS))


@record
class Joins:
    fds: list[tuple[str, int, int]]  # (name, fd, clone flag)

    @property
    def names(self) -> list[str]:
        return [n for n, _, _ in self.fds]

    def close(self) -> None:
        for _, fd, _ in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


def open_for(pid: int, start_time: int) -> Joins:
    """Descriptors of the namespaces of `pid` that differ from ours."""
    joins = Joins([])
    try:
        for name, flag in ORDER:
            path = f"/proc/{pid}/ns/{name}"
            try:
                theirs = os.stat(path).st_ino
            except FileNotFoundError:
                if not os.path.exists(f"/proc/self/ns/{name}"):
                    continue  # this kernel lacks the namespace type
                raise
            if theirs == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            joins.fds.append((name, os.open(path, os.O_RDONLY | os.O_CLOEXEC), flag))
    except OSError as e:
        joins.close()
        raise ContainerError(f"cannot open the namespaces of the container's init {pid}: "
                             f"{e.strerror}") from None
    if proc_start_time(pid) != start_time:
        joins.close()
        raise ContainerError("the container's init exited while its namespaces were opened")
    return joins


def enter(joins: Joins) -> None:
    """In a single-threaded child: setns into each, user first."""
    for name, fd, flag in joins.fds:
        try:
            kernel.setns(fd, flag)
        except OSError as e:
            raise ContainerError(f"cannot join the container's {name} namespace: "
                                 f"{os.strerror(e.errno or 0)}") from None
        if name == "user":
            # container root from here on (the process's own user is applied later)
            try:
                os.setresgid(0, 0, 0)
            except OSError:
                pass
            try:
                os.setresuid(0, 0, 0)
            except OSError:
                pass
    joins.close()


def enter_and_fork(joins: Joins) -> None:
    """enter(), then, when a pid namespace was joined, continue in a child that is in it
    (its /proc/self is the container's); this process waits and passes the status on. The
    child dies with it, so a hook's timeout kill reaches both."""
    joined_pid = "pid" in joins.names
    enter(joins)
    if not joined_pid:
        return
    child = os.fork()
    if child == 0:
        kernel.prctl(kernel.PR_SET_PDEATHSIG, 9)
        return
    _, status = os.waitpid(child, 0)
    os._exit(exit_code(status))
