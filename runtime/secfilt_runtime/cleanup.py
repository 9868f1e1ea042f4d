"""Undo stacks and scoped descriptors for the start paths, without contextlib.

contextlib, with the functools and collections it loads, costs ~6 ms of every command's start
on the dev VM (issue 7); what the lifecycle needs of it is this much.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Cleanup:
    """contextlib.ExitStack's callbacks: run last-registered first when the block ends (also
    on success, unless pop_all took them). A callback that raises does not stop the others;
    the last exception raised propagates, its __context__ linked as ExitStack links it
    (tests/test_cleanup.py compares the two)."""

    def __init__(self) -> None:
        self._callbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def callback(self, fn: Callable[..., Any], /, *args: Any) -> None:
        self._callbacks.append((fn, args))

    def pop_all(self) -> Cleanup:
        """Take the callbacks away (to keep what they would undo); returns them."""
        taken = Cleanup()
        taken._callbacks, self._callbacks = self._callbacks, []
        return taken

    def close(self) -> None:
        self.__exit__(None, None, None)

    def __enter__(self) -> Cleanup:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        raised = exc
        while self._callbacks:
            fn, args = self._callbacks.pop()
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - the others still run; re-raised below
                _link(e, raised, exc)
                raised = e
        if raised is not None and raised is not exc:
            context = raised.__context__
            try:
                raise raised
            except BaseException:
                raised.__context__ = context  # the raise above set it to `exc`
                raise
        return False


def _link(new: BaseException, previous: BaseException | None,
          handled: BaseException | None) -> None:
    """Make `previous` the context of `new` as ExitStack does: at the end of the chain Python
    gave `new`, where it reaches the exception being handled (`handled`)."""
    while True:
        context = new.__context__
        if context is None or context is previous:
            return
        if context is handled:
            break
        new = context
    new.__context__ = previous


class Opened:
    """`with Opened(fd) as fd:` closes the descriptor when the block ends."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
