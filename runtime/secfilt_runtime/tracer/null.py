"""The null tracer: seizes with the same options and resumes every stop without judging it.
What is left of a traced run's cost when the policy's decisions cost nothing (bench)."""

from __future__ import annotations

from ..errors import ContainerError
from .loop import Tracer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def trace_child(pid: int, *, release: Callable[[], None] | None = None) -> int:
    tracer = Tracer(None, container_id=None, log_path=None)
    tracer.watch.add(pid)
    tracer.seize(pid)
    if release is not None:
        release()
    tracer.run()
    if pid not in tracer.statuses:
        raise ContainerError(f"null tracer: the exit status of {pid} was not collected")
    return tracer.statuses[pid]
