#!/usr/bin/env python3
"""Where one judged stop's time goes inside the tracer: `secfilt` run in this process, its
tracer's steps timed around each call.

    sudo bench/stop_profile.py [--calls N]

For a write-open under read-only + allow-write and a connect under a netmask (the calls of
syscall_cost.py, from the same static loop), prints per step the median time of one call:
the stop's whole handling (`Tracer._seccomp`: syscall info, judging, the answer), and within
it PTRACE_GET_SYSCALL_INFO, reading the path (process_vm_readv), the openat2 that proves a path
names no symbolic link, and the judge; then PTRACE_CONT, which wakes the tracee. The wrappers
add ~0.3 us each. Nothing is asserted: a profile to read next to syscall_cost.py's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
MARK = "stop_profile: "  # the child's medians, on stderr after whatever secfilt printed
STEPS = (("tracer.loop", "Tracer", "_seccomp", "the stop's handling"),
         ("kernel", "PtraceStop", "syscall_info", "  PTRACE_GET_SYSCALL_INFO"),
         ("tracer.judge", "Judge", "judge", "  judging"),
         ("tracer.memory", "Memory", "string", "    reading the path"),
         ("tracer.judge", None, "plain", "    openat2 + close (no symlink)"),
         ("tracer.resolve", None, "plain", "    openat2 + close (no symlink)"),  # Resolver's
         ("kernel", "PtraceStop", "cont", "PTRACE_CONT"))


def _timed(step, samples: list[int]):
    clock = time.perf_counter_ns

    def timed(*args, **kwargs):
        t = clock()
        try:
            return step(*args, **kwargs)
        finally:
            samples.append(clock() - t)

    return timed


def child(argv: list[str]) -> int:
    """Run secfilt's main here with the tracer's steps timed; print the medians as JSON."""
    import importlib

    timings: dict[str, list[int]] = {}
    for module, cls, name, label in STEPS:
        owner = importlib.import_module(f"secfilt_runtime.{module}")
        if cls is not None:
            owner = getattr(owner, cls)
        setattr(owner, name, _timed(getattr(owner, name), timings.setdefault(label, [])))
    from secfilt_runtime.secfilt_cli import main

    sys.argv = ["secfilt", *argv]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        # secfilt's parent is the tracer: the command's own process ends in exec or _exit
        print(MARK + json.dumps({k: statistics.median(v) / 1000
                                 for k, v in timings.items() if v}), file=sys.stderr)
    return code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        return child(args.child)
    with tempfile.TemporaryDirectory(prefix="secfilt-stop-") as tmp:
        work = Path(tmp)
        loop = work / "sysloop"
        subprocess.run(["gcc", "-static", "-O2", "-o", str(loop),
                        str(BENCH / "progs" / "sysloop.c")], check=True)
        (work / "allowed").mkdir()
        cases = {
            "write-open": ["--read-only=1", f"--allow-write={work / 'allowed'}", str(loop),
                           "open-write", str(args.calls), str(work / "allowed" / "f")],
            "connect": ["--allowed-netmask=127.0.0.0/8", str(loop), "connect",
                        str(args.calls), "127.0.0.1", "9"],
        }
        for case, argv in cases.items():
            p = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                                "--child", *argv], capture_output=True, text=True, check=False,
                               env={**os.environ, "PYTHONPATH": str(BENCH.parent / "runtime")})
            lines = [ln[len(MARK):] for ln in p.stderr.splitlines() if ln.startswith(MARK)]
            if p.returncode != 0 or not lines:
                print(f"{case}: failed: {p.stderr.strip()[-500:]}", file=sys.stderr)
                return 1
            per_call = float(p.stdout.split()[-1]) / 1000
            print(f"{case}: {per_call:.1f} us a call as the program times it; tracer steps, "
                  "median us:")
            for label, us in json.loads(lines[-1]).items():
                print(f"  {label:34} {us:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
