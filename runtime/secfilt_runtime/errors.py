"""Exceptions that carry a message fit for the user: what failed, on which file, field or path;
and `warn`, for what is worth saying but fails nothing."""

import sys


class SecfiltError(Exception):
    """Base of every error the runtime reports to its caller instead of a traceback."""


class ConfigError(SecfiltError):
    """config.json (or a policy) is unreadable, malformed, or asks for something impossible."""


class ContainerError(SecfiltError):
    """Setting up or running the container failed."""


class StateError(SecfiltError):
    """The container id is unknown, taken, or in the wrong state for the operation."""


def warn(message: str) -> None:
    """`message` on stderr, one bare line: what the policy modules printed through logging's
    last-resort handler (nothing ever configured a handler), without logging's ~7 ms of imports,
    and callable in a container's init after pivot_root, where nothing can be imported. Like
    logging, a stderr that cannot be written fails nothing."""
    try:
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # None, closed, or a broken pipe
        pass


# the tracer (and secfilt's supervisor) find a process by the pid they are given in /proc
NOT_OUR_PROCFS = ("/proc shows another pid namespace's processes (one entered without a procfs "
                  "of its own, as `unshare -p -f` without --mount-proc): the tracer would read "
                  "other processes' paths and descriptors; mount a procfs for this namespace")
