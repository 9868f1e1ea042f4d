#!/usr/bin/env python3
"""Per-call cost of the system calls a policy judges, and of those it does not.

For each case one static C loop (bench/progs/sysloop.c) times N calls from inside the process
and prints ns per call; every variant runs the same binary with the same arguments:

  bare      no sandbox
  null      bench/null_tracer.py: SECCOMP_RET_TRACE for the call, a Python tracer that only
            resumes, waiting for events as secfilt's tracer does (polls briefly after a stop:
            the floor of the seccomp+ptrace design)
  nullsleep the same tracer always asleep in waitpid (--sleep): a plain ptrace loop, whose
            stops on an idle VM cost mostly the cross-CPU wake-up (the "null" of earlier runs)
  secfilt   `secfilt` with a policy under which the call is judged by the tracer and allowed
  strace    `strace -f --seccomp-bpf -e trace=<call>`: the same selection, traced by strace
  null1, secfilt1 (--one-cpu): null and secfilt with tracer and tracee on one CPU (taskset
            -c 0): what a stop costs without the cross-CPU wake-ups, which dominate on an idle
            VM (a sandbox cannot pin a workload's tasks; this only shows where the time goes)
  null+poll, secfilt+poll, strace+poll (--idle-poll NS): the same with the guest's idle
            CPUs polling NS ns before they halt (cpuidle-haltpoll's guest_halt_poll_ns, the
            kernel's default 200000; this VM boots with 0), set for those runs only and put
            back after each: what a stop costs where waking an idle CPU is cheap

Rounds are interleaved (every variant once per round, order rotated) and medians reported, so a
busy machine slows all variants alike. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent


@dataclass
class Case:
    name: str
    mode: list[str]         # sysloop arguments after N
    traced: str             # the syscall strace/null trace
    policy: list[str]       # secfilt options that make the call a judged (or unjudged) one
    calls: int


@dataclass
class Row:
    case: str
    variant: str
    ns_per_call: float
    samples: list[float]


def build_sysloop(workdir: Path) -> Path:
    out = workdir / "sysloop"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(BENCH / "progs" / "sysloop.c")],
                   check=True)
    return out


def installed(script: str) -> str | None:
    """The console script installed beside this interpreter, else the first on PATH. Beside
    the interpreter first: a version manager's shim on PATH (pyenv's is a bash script that
    runs `pyenv exec`) would add its own ~90 ms to every start."""
    beside = Path(sys.executable).parent / script
    return str(beside) if beside.exists() else shutil.which(script)


def secfilt_command() -> list[str]:
    found = installed("secfilt")
    return [found] if found else [sys.executable, "-m", "secfilt_runtime.secfilt_cli"]


HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
POLLED = "+poll"


def variants(case: Case, one_cpu: bool = False, idle_poll: bool = False
             ) -> dict[str, list[str]]:
    out = {
        "bare": [],
        "null": [sys.executable, str(BENCH / "null_tracer.py"), case.traced, "--"],
        "nullsleep": [sys.executable, str(BENCH / "null_tracer.py"), "--sleep", case.traced,
                      "--"],
        "secfilt": [*secfilt_command(), *case.policy],
    }
    if shutil.which("strace"):
        out["strace"] = ["strace", "-f", "--seccomp-bpf", "-e", f"trace={case.traced}",
                         "-o", "/dev/null"]
    if one_cpu and shutil.which("taskset"):
        out["null1"] = ["taskset", "-c", "0", *out["null"]]
        out["secfilt1"] = ["taskset", "-c", "0", *out["secfilt"]]
    if idle_poll:
        for name in ("null", "secfilt", "strace"):
            if name in out:
                out[name + POLLED] = out[name]
    return out


def cases(workdir: Path, quick: bool) -> list[Case]:
    allowed = workdir / "allowed"
    allowed.mkdir(exist_ok=True)
    target = str(allowed / "f")
    scale = 10 if quick else 1
    return [
        Case("write-open (judged)", ["open-write", target], "openat",
             ["--read-only=1", f"--allow-write={allowed}"], 20000 // scale),
        Case("connect (judged)", ["connect", "127.0.0.1", "9"], "connect",
             ["--allowed-netmask=127.0.0.0/8"], 20000 // scale),
        Case("read-open (BPF only)", ["open-read", "/etc/hostname"], "openat",
             ["--read-only=1", f"--allow-write={allowed}"], 200000 // scale),
        Case("getppid (no rule)", ["getppid"], "openat",
             ["--read-only=1", f"--allow-write={allowed}", "--allowed-netmask=127.0.0.0/8"],
             2000000 // scale),
    ]


def run_once(prefix: list[str], sysloop: Path, case: Case, halt_poll_ns: int | None = None
             ) -> float:
    argv = [*prefix, str(sysloop), case.mode[0], str(case.calls), *case.mode[1:]]
    if halt_poll_ns is None:
        p = subprocess.run(argv, capture_output=True, text=True, check=False)
    else:
        was = HALT_POLL.read_text().strip()
        try:
            HALT_POLL.write_text(str(halt_poll_ns))
            p = subprocess.run(argv, capture_output=True, text=True, check=False)
        finally:
            HALT_POLL.write_text(was)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()[-500:]}")
    return float(p.stdout.split()[-1])


def measure(rounds: int = 5, quick: bool = False, one_cpu: bool = False,
            idle_poll_ns: int | None = None) -> list[Row]:
    if idle_poll_ns is not None and not HALT_POLL.exists():
        raise SystemExit(f"--idle-poll: no {HALT_POLL} (not a guest with cpuidle-haltpoll)")
    with tempfile.TemporaryDirectory(prefix="secfilt-bench-") as tmp:
        workdir = Path(tmp)
        sysloop = build_sysloop(workdir)
        rows: list[Row] = []
        for case in cases(workdir, quick):
            runs = variants(case, one_cpu, idle_poll_ns is not None)
            samples: dict[str, list[float]] = {name: [] for name in runs}
            names = list(runs)
            for r in range(rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    try:
                        samples[name].append(run_once(
                            runs[name], sysloop, case,
                            idle_poll_ns if name.endswith(POLLED) else None))
                    except RuntimeError as e:
                        print(f"  {case.name} / {name}: {e}", file=sys.stderr)
            rows += [Row(case.name, name, statistics.median(s), s)
                     for name, s in samples.items() if s]
        return rows


def table(rows: list[Row]) -> str:
    lines = [f"{'case':24} {'variant':12} {'ns/call':>10} {'x bare':>8} {'x null':>8}"]
    # a pinned or polled variant is compared with the null tracer run alike
    by_case: dict[str, dict[str, float]] = {}
    for row in rows:
        by_case.setdefault(row.case, {})[row.variant] = row.ns_per_call
    for row in rows:
        base = by_case[row.case]
        bare = base.get("bare")
        null = base.get("null1" if row.variant.endswith("1") else
                        "null" + POLLED if row.variant.endswith(POLLED) else "null")
        lines.append(f"{row.case:24} {row.variant:12} {row.ns_per_call:10.0f} "
                     f"{row.ns_per_call / bare if bare else float('nan'):8.2f} "
                     f"{row.ns_per_call / null if null else float('nan'):8.2f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="10x fewer calls, for a smoke test")
    ap.add_argument("--one-cpu", action="store_true",
                    help="also null and secfilt with tracer and tracee pinned to CPU 0")
    ap.add_argument("--idle-poll", type=int, metavar="NS",
                    help="also null, secfilt and strace with guest_halt_poll_ns set to NS "
                         "(200000: the kernel's default) for those runs")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.idle_poll is not None:
        # a SIGTERM unwinds like ^C does: the idle-poll setting is put back on the way out
        signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(128 + signal.SIGTERM))
    rows = measure(args.rounds, args.quick, args.one_cpu, args.idle_poll)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
