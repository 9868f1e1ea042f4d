"""cleanup.Cleanup stands in for contextlib.ExitStack on the start paths: the same order, the
same exceptions, compared with ExitStack itself."""

from __future__ import annotations

import contextlib
import os

import pytest

from secfilt_runtime.cleanup import Cleanup, Opened


def _scenario(stack_type, fail_body: bool, failing: set[int], keep: bool = False):
    """Callbacks 0..3 registered in order; those in `failing` raise. Returns (order run,
    exception that came out and the chain of its contexts)."""
    ran: list[int] = []

    def step(i: int) -> None:
        ran.append(i)
        if i in failing:
            raise RuntimeError(f"callback {i}")

    raised = None
    try:
        with stack_type() as stack:
            for i in range(4):
                stack.callback(step, i)
            if keep:
                stack.pop_all()
            if fail_body:
                raise ValueError("body")
    except BaseException as e:  # noqa: BLE001
        raised = e
    chain = []
    while raised is not None:
        chain.append(f"{type(raised).__name__}: {raised}")
        raised = raised.__context__
    return ran, chain


@pytest.mark.parametrize("fail_body", [False, True])
@pytest.mark.parametrize("failing", [set(), {2}, {0, 3}, {1, 2}])
@pytest.mark.parametrize("keep", [False, True])
def test_cleanup_runs_and_raises_as_exitstack_does(fail_body, failing, keep):
    assert _scenario(Cleanup, fail_body, failing, keep) == \
        _scenario(contextlib.ExitStack, fail_body, failing, keep)


def test_pop_all_keeps_the_callbacks_for_later():
    ran: list[str] = []
    with Cleanup() as stack:
        stack.callback(ran.append, "undo")
        kept = stack.pop_all()
    assert ran == []
    kept.close()
    assert ran == ["undo"]


def test_opened_closes_its_descriptor_even_on_error():
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(KeyError), Opened(r) as fd:
        assert fd == r
        raise KeyError
    with pytest.raises(OSError):
        os.fstat(r)
