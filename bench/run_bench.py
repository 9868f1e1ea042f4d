#!/usr/bin/env python3
"""Time `secfilt-runtime run` side by side with runc and crun, on one busybox bundle.

Everything is reported as ratios of medians measured in the same run, with the runtimes
interleaved round by round so that drift of the machine hits all of them alike. Nothing here
asserts a duration: speed belongs to this report, not to the tests.

usage (root): bench/run_bench.py [-n 30] [--job-iterations 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MKROOTFS = REPO / "bundles" / "mkrootfs.sh"
UNIFIED = "/sys/fs/cgroup/unified"

# name -> (container argv, iterations key). The shell jobs run in busybox's sh in the container
# and, for the host baseline, with the same busybox binary outside of any container.
WORKLOADS: dict[str, tuple[list[str], str]] = {
    "true": (["/bin/true"], "start"),
    # the same under a secfilter policy (runc and crun ignore the annotation): the tracer,
    # the policy's filter, Landlock and the read-only mounts are set up
    "true-policy": (["/bin/true"], "start"),
    # create + start + delete --force of /bin/true, as an engine drives a runtime (one sh
    # runs the three commands, for every runtime alike; no host baseline)
    "lifecycle": (["/bin/true"], "start"),
    # pure user-space CPU: shows that once started, the process runs at native speed
    "cpu": (["/bin/sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"], "job"),
    # ~2M read/write syscalls from one process: the cost a seccomp filter adds per syscall
    "syscall": (["/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=1 count=1000000 2>/dev/null"],
                "job"),
    # fork + execve + openat of a path: what the ptrace tracer will stop on
    "exec-open": (["/bin/sh", "-c",
                   "for i in $(seq 500); do cat /proc/self/status >/dev/null; done"], "job"),
}


POLICY = {"org.secfilter.read-only": "true"}
LIFECYCLE_SH = ('set -e; id=$1; b=$2; r=$3; shift 3; "$@" --root "$r" create --bundle "$b" '
                '"$id"; "$@" --root "$r" start "$id"; "$@" --root "$r" delete --force "$id"')

# ----------------------------------------------------------------------------- timing

@dataclass
class Sample:
    ns: int
    rc: int
    err: str


def time_once(argv: Sequence[str], env: dict[str, str] | None = None) -> Sample:
    """Wall time from spawning argv to reaping it: the same code for every runtime."""
    t0 = time.perf_counter_ns()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=env, check=False)
    ns = time.perf_counter_ns() - t0
    return Sample(ns, p.returncode, p.stderr.decode(errors="replace")[-2000:])


Runner = Callable[[Sequence[str], "dict[str, str] | None"], Sample]


class Worker:
    """This script in --worker mode inside another mount namespace, timing what it is sent.

    crun refuses the hybrid cgroup layout; in a private mount namespace without the cgroup2
    mount it takes the v1 path like the others. Timing inside that namespace leaves the cost of
    unshare+umount (paid once, at the worker's start) out of crun's figures.
    """

    def __init__(self, wrapper: list[str]) -> None:
        argv = [*wrapper, sys.executable, str(Path(__file__).resolve()), "--worker"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def __call__(self, argv: Sequence[str], env: dict[str, str] | None) -> Sample:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"argv": list(argv), "env": env}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench worker exited ({self.proc.wait()})")
        return Sample(**json.loads(line))

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def worker_main() -> int:
    for line in sys.stdin:
        req = json.loads(line)
        s = time_once(req["argv"], req["env"])
        print(json.dumps({"ns": s.ns, "rc": s.rc, "err": s.err}), flush=True)
    return 0


def local(argv: Sequence[str], env: dict[str, str] | None) -> Sample:
    return time_once(argv, env)


# ----------------------------------------------------------------------------- setup

@dataclass
class Runtime:
    name: str
    command: list[str]  # before `--root DIR run ...`
    runner: Runner
    root: Path | None = None  # its --root; None for the host baseline
    notes: list[str] = field(default_factory=list)

    def argv(self, bundle: Path, cid: str, args: list[str], rootfs: Path,
             workload: str = "") -> list[str]:
        if self.root is None:  # host: the same busybox, no container
            return [str(rootfs / "bin" / "busybox"), Path(args[0]).name, *args[1:]]
        if workload == "lifecycle":
            return ["sh", "-c", LIFECYCLE_SH, "sh", cid, str(bundle), str(self.root),
                    *self.command]
        return [*self.command, "--root", str(self.root), "run", "--bundle", str(bundle), cid]


def resolve_pyenv_shim(path: str) -> str:
    """A pyenv shim costs a bash + `pyenv exec` per call (~0.15 s here): time the real script."""
    if "/shims/" not in path or not shutil.which("pyenv"):
        return path
    out = subprocess.run(["pyenv", "which", Path(path).name], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else path


def secfilt_command(arg: str | None) -> tuple[list[str], str | None]:
    """The command for secfilt-runtime, and the pyenv shim it bypasses if any."""
    if arg:
        return shlex.split(arg), None
    found = shutil.which("secfilt-runtime")
    if found:
        real = resolve_pyenv_shim(found)
        return [real], (found if real != found else None)
    return [sys.executable, "-m", "secfilt_runtime"], None


def is_launcher(path: str) -> bool:
    """A launcher of the project's bin/ (sh starting Python under -I -S), not a console script."""
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path) as f:
        return f.readline().rstrip("\n") == "#!/bin/sh" and f.readline().startswith('""":"')
    return False


def interpreter_of(cmd: list[str]) -> str:
    """The Python that runs secfilt-runtime: for a launcher, the python3 its sh part picks
    (beside the script, links resolved, else the first on PATH); for a console script, its
    shebang; else cmd[0]."""
    if is_launcher(cmd[0]):
        beside = Path(cmd[0]).resolve().parent / "python3"
        if os.access(beside, os.X_OK):
            return str(beside)
        return shutil.which("python3") or sys.executable
    with contextlib.suppress(OSError, UnicodeDecodeError):
        first = Path(cmd[0]).read_text().split("\n", 1)[0]
        if first.startswith("#!") and "python" in first:
            return first[2:].strip().split()[0]
    return cmd[0] if "python" in Path(cmd[0]).name else sys.executable


def byte_compile(cmd: list[str]) -> str:
    """Write the package's bytecode before timing, as installing a wheel does. Otherwise a
    module edited since its .pyc was written is compiled again on every start while
    PYTHONDONTWRITEBYTECODE is set (it is in this project's VM): ~4 ms a module."""
    py = interpreter_of(cmd)
    # a launcher runs under -I: the package it finds is site's, whatever PYTHONPATH says
    isolated = ["-I"] if is_launcher(cmd[0]) else []
    where = subprocess.run([py, *isolated, "-c", "import os, secfilt_runtime; "
                            "print(os.path.dirname(secfilt_runtime.__file__))"],
                           capture_output=True, text=True, check=False).stdout.strip()
    if not where:
        return "the package was not found: not byte-compiled"
    p = subprocess.run([py, "-m", "compileall", "-q", where], capture_output=True, text=True,
                       check=False)
    return (f"byte-compiled {where} first" if p.returncode == 0 else
            f"byte-compiling {where} failed: {(p.stdout + p.stderr).strip()[-200:]}")


def make_bundles(tmp: Path, spec_tool: str) -> tuple[Path, dict[str, Path]]:
    rootfs = tmp / "rootfs"
    subprocess.run(["sh", str(MKROOTFS), str(rootfs)], check=True)
    specdir = tmp / "spec"
    specdir.mkdir()
    subprocess.run([spec_tool, "spec"], cwd=specdir, check=True)
    base = json.loads((specdir / "config.json").read_text())
    base["process"]["terminal"] = False
    base["root"] = {"path": str(rootfs), "readonly": True}
    bundles = {}
    for name, (args, _) in WORKLOADS.items():
        cfg = json.loads(json.dumps(base))
        cfg["process"]["args"] = args
        if name == "true-policy":
            cfg["annotations"] = {**cfg.get("annotations", {}), **POLICY}
        b = tmp / "bundles" / name
        b.mkdir(parents=True)
        (b / "config.json").write_text(json.dumps(cfg, indent=2))
        bundles[name] = b
    return rootfs, bundles


# ----------------------------------------------------------------------------- measuring

def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with 30 samples p90 is the 27th, a real observation."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, -(-len(s) * q // 100) - 1))] if s else float("nan")


def measure(runtimes: list[Runtime], workload: str, bundle: Path, rootfs: Path, n: int,
            warmup: int, host_env: dict[str, str]) -> dict[str, list[float]]:
    args = WORKLOADS[workload][0]
    times: dict[str, list[float]] = defaultdict(list)
    alive = list(runtimes)
    counter = 0

    def one(rt: Runtime) -> Sample:
        nonlocal counter
        counter += 1
        env = host_env if rt.root is None else None
        return rt.runner(rt.argv(bundle, f"b{workload}{counter}", args, rootfs, workload), env)

    if workload == "lifecycle":  # an engine's sequence: no host equivalent
        alive = [rt for rt in alive if rt.root is not None]
    for rt in list(alive):
        for _ in range(warmup):
            s = one(rt)
            if s.rc != 0:
                msg = s.err.strip().splitlines()[-1] if s.err.strip() else ""
                print(f"  {workload}: {rt.name} failed (exit {s.rc}): {msg}", file=sys.stderr)
                rt.notes.append(f"{workload}: failed, exit {s.rc}: {msg}")
                alive.remove(rt)
                break
    for i in range(n):
        k = i % len(alive) if alive else 0
        for rt in alive[k:] + alive[:k]:  # rotate the order: no runtime always goes first
            s = one(rt)
            if s.rc != 0:
                rt.notes.append(f"{workload}: round {i} exit {s.rc}: {s.err.strip()[-200:]}")
                continue
            times[rt.name].append(s.ns / 1e6)
        print(f"  {workload}: round {i + 1}/{n}", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return times


def summarise(all_times: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    rows = []
    for workload, times in all_times.items():
        med = {rt: statistics.median(v) for rt, v in times.items() if v}
        start = {rt: statistics.median(v) for rt, v in all_times.get("true", {}).items() if v}
        for rt, v in times.items():
            if not v:
                continue
            row: dict[str, Any] = {
                "workload": workload, "runtime": rt, "n": len(v),
                "median_ms": med[rt], "p90_ms": pct(v, 90),
                "vs_runc": med[rt] / med["runc"] if "runc" in med else None,
                "vs_crun": med[rt] / med["crun"] if "crun" in med else None,
            }
            if workload != "true" and rt in start:
                # the job's own time, with the runtime's start-up (its /bin/true median) taken off
                row["net_ms"] = med[rt] - start[rt]
                runc_net = med["runc"] - start["runc"] if "runc" in med and "runc" in start else 0
                row["net_vs_runc"] = row["net_ms"] / runc_net if runc_net > 0 else None
            rows.append(row)
    return rows


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'workload':<10} {'runtime':<16} {'n':>3} {'median ms':>10} {'p90 ms':>9} "
            f"{'x runc':>7} {'x crun':>7} {'net ms':>8} {'net x runc':>10}")
    print(head)
    print("-" * len(head))
    last = None
    for r in rows:
        if last and r["workload"] != last:
            print()
        last = r["workload"]
        print(f"{r['workload']:<10} {r['runtime']:<16} {r['n']:>3} {r['median_ms']:>10.1f} "
              f"{r['p90_ms']:>9.1f} {fmt(r['vs_runc'], '>7.2f')} {fmt(r['vs_crun'], '>7.2f')} "
              f"{fmt(r.get('net_ms'), '>8.1f')} {fmt(r.get('net_vs_runc'), '>10.2f')}")


# ----------------------------------------------------------------------------- start-up split

def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """-X importtime lines -> (module, self us, cumulative us, depth), in output order."""
    out = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        selfus, cum, name = line[len("import time:"):].split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        out.append((name.strip(), int(selfus), int(cum), depth))
    return out


def importtime_runs(py: str, args: list[str], env: dict[str, str], runs: int,
                    launcher: str | None = None) -> list[list[tuple[str, int, int, int]]]:
    """-X importtime of the command as it really starts: a bin/ launcher's Python part under
    -I -S (what its sh part execs), else the package as a module with site."""
    start = [py, "-I", "-S", "-X", "importtime", launcher] if launcher else \
        [py, "-X", "importtime", "-m", "secfilt_runtime"]
    res = []
    for _ in range(runs):
        p = subprocess.run([*start, *args], capture_output=True, text=True, env=env, check=False)
        res.append(parse_importtime(p.stderr))
    return res


def median_by(runs: list[list[tuple[str, int, int, int]]], key: Callable[[str], str],
              col: int) -> dict[str, float]:
    """Per key, the median over runs of the summed column (1 = self, 2 = cumulative)."""
    per_run = []
    for entries in runs:
        acc: dict[str, int] = defaultdict(int)
        for e in entries:
            acc[key(e[0])] += e[col]
        per_run.append(acc)
    keys = {k for acc in per_run for k in acc}
    return {k: statistics.median([acc.get(k, 0) for acc in per_run]) for k in keys}


def startup_split(cmd: list[str], shim: str | None, true_median: float | None,
                  runs: int, run_argv: list[str] | None) -> dict[str, Any]:
    py = interpreter_of(cmd)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "runtime"), *filter(None, [env.get("PYTHONPATH")])])

    launcher = cmd[0] if len(cmd) == 1 and is_launcher(cmd[0]) else None
    probes = {
        "python -S -c pass (bare interpreter)": [py, "-S", "-c", "pass"],
        "python -I -S -c pass (how the launchers start it)": [py, "-I", "-S", "-c", "pass"],
        "python -c pass (+ site and .pth hooks)": [py, "-c", "pass"],
        "python -c 'import secfilt_runtime.cli'": [py, "-c", "import secfilt_runtime.cli"],
        "secfilt-runtime --help": [*cmd, "--help"],
    }
    if shim:
        probes["secfilt-runtime --help via the pyenv shim (not used above)"] = [shim, "--help"]
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):  # interleaved, like the runtimes
        for k, argv in probes.items():
            samples[k].append(time_once(argv, env).ns / 1e6)
    walls = {k: statistics.median(v) for k, v in samples.items()}
    if true_median is not None:
        walls["secfilt-runtime run /bin/true (median above)"] = true_median

    help_runs = importtime_runs(py, ["--help"], env, runs, launcher)
    total_us = statistics.median(sum(e[1] for e in r) for r in help_runs)
    by_pkg = median_by(help_runs, lambda m: m.split(".")[0], 1)
    top_cum = median_by([[e for e in r if e[3] <= 1] for r in help_runs], lambda m: m, 2)
    split: dict[str, Any] = {
        "interpreter": py,
        "started_as": "the launcher's Python part, -I -S" if launcher else "-m, with site",
        "wall_ms": walls,
        "help_import_total_ms": total_us / 1000,
        "help_top_packages_self_ms": sorted(((k, v / 1000) for k, v in by_pkg.items()),
                                            key=lambda kv: -kv[1])[:5],
        "help_top_imports_cumulative_ms": sorted(((k, v / 1000) for k, v in top_cum.items()),
                                                 key=lambda kv: -kv[1])[:5],
    }
    if run_argv:
        # the run path may import more than --help (lifecycle, container.*, jsonschema...)
        rr = importtime_runs(py, run_argv, env, max(1, runs // 2), launcher)
        help_mods = {e[0] for r in help_runs for e in r}
        extra = median_by([[e for e in r if e[0] not in help_mods] for r in rr],
                          lambda m: m.split(".")[0], 1)
        split["run_import_total_ms"] = statistics.median(sum(e[1] for e in r) for r in rr) / 1000
        split["run_extra_packages_self_ms"] = sorted(((k, v / 1000) for k, v in extra.items()),
                                                     key=lambda kv: -kv[1])[:5]
    return split


def print_split(s: dict[str, Any]) -> None:
    print(f"\nsecfilt-runtime start-up (interpreter {s['interpreter']}), medians:")
    for k, v in s["wall_ms"].items():
        print(f"  {k:<62} {v:8.1f} ms")
    print(f"  import time of `secfilt-runtime --help` as it starts ({s['started_as']}; sum of "
          f"-X importtime self): {s['help_import_total_ms']:.1f} ms")
    print("  top 5 packages by own import time (self, summed over the package's modules):")
    for k, v in s["help_top_packages_self_ms"]:
        print(f"    {k:<40} {v:7.1f} ms")
    print("  top 5 imports by cumulative time (top level and their direct imports):")
    for k, v in s["help_top_imports_cumulative_ms"]:
        print(f"    {k:<40} {v:7.1f} ms")
    if "run_import_total_ms" in s:
        print(f"  import time of `run /bin/true`: {s['run_import_total_ms']:.1f} ms; "
              f"what it imports beyond --help, top 5 packages (self):")
        for k, v in s["run_extra_packages_self_ms"]:
            print(f"    {k:<40} {v:7.1f} ms")


# ----------------------------------------------------------------------------- main

def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.node()}: Linux {platform.release()}, {os.cpu_count()} CPUs ({cpu})"


def version(name: str, cmd: list[str]) -> str:
    if name == "secfilt-runtime":  # no --version yet: say which tree was measured
        git = ["git", "-C", str(REPO)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False).stdout.strip() or "?"
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=False).stdout.strip()
        return f"{' '.join(cmd)} (tree {REPO} at {head}{' + local changes' if dirty else ''})"
    p = subprocess.run([*cmd, "--version"], capture_output=True, text=True, check=False)
    return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr) else "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--iterations", type=int, default=30,
                    help="timed runs of the start-up workload (default 30)")
    ap.add_argument("--job-iterations", type=int, default=10,
                    help="timed runs of each longer job (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--secfilt", help="command for secfilt-runtime (default: the console "
                    "script on PATH, past a pyenv shim, else python -m secfilt_runtime)")
    ap.add_argument("--no-host", action="store_true", help="skip the no-container baseline")
    ap.add_argument("--startup-runs", type=int, default=15,
                    help="repetitions of each start-up split measurement (default 15)")
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--seccomp-runs", type=int, default=10,
                    help="runs of the seccomp cold/warm measurement (default 10, 0 skips)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker_main()
    if os.geteuid() != 0:
        print("run_bench.py: containers need root", file=sys.stderr)
        return 2
    workloads = [w for w in a.workloads.split(",") if w]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workloads: {', '.join(unknown)}")

    tmp = Path(tempfile.mkdtemp(prefix="secfilt-bench."))
    workers: list[Worker] = []
    try:
        cmd, shim = secfilt_command(a.secfilt)
        runtimes: list[Runtime] = []
        skipped: list[str] = [byte_compile(cmd)]
        for name in ("runc", "crun"):
            exe = shutil.which(name)
            if not exe:
                skipped.append(f"{name}: not installed (apt-get install {name}), skipped")
                continue
            rt = Runtime(name, [exe], local, tmp / f"root-{name}")
            if name == "crun" and os.path.ismount(UNIFIED):
                wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f'umount {UNIFIED} && exec "$@"', "sh"]
                workers.append(Worker(wrap))
                rt.runner = workers[-1]
                rt.notes.append(f"runs in a private mount namespace without {UNIFIED} (crun "
                                "refuses hybrid cgroups); timed inside it, so unshare and "
                                "umount are not counted")
            runtimes.append(rt)
        runtimes.append(Runtime("secfilt-runtime", cmd, local, tmp / "root-secfilt"))
        spec_tool = next((r.command[0] for r in runtimes if r.name in ("runc", "crun")), None)
        if spec_tool is None:
            print("run_bench.py: neither runc nor crun: nothing to compare with and no "
                  "`spec` to start from", file=sys.stderr)
            return 2
        rootfs, bundles = make_bundles(tmp, spec_tool)
        if not a.no_host:
            runtimes.insert(0, Runtime("host (no ctr)", [], local, None))
        host_env = {"PATH": ":".join(str(rootfs / d) for d in ("bin", "sbin", "usr/bin",
                                                                "usr/sbin"))}

        info = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "machine": machine(),
            "command": " ".join(shlex.quote(x) for x in sys.argv),
            "versions": {r.name: version(r.name, r.command) for r in runtimes
                         if r.root is not None},
            "secfilt_command": cmd,
        }
        print(f"# {info['date']}  {info['machine']}", file=sys.stderr)
        for s in skipped:
            print(f"# {s}", file=sys.stderr)

        all_times: dict[str, dict[str, list[float]]] = {}
        for w in workloads:
            n = a.iterations if WORKLOADS[w][1] == "start" else a.job_iterations
            all_times[w] = measure(runtimes, w, bundles[w], rootfs, n, a.warmup, host_env)
        rows = summarise(all_times)

        print(f"\n{info['date']}  {info['machine']}")
        for k, v in info["versions"].items():
            print(f"  {k}: {v}")
        print()
        print_table(rows)
        notes = skipped + [f"{r.name}: {n}" for r in runtimes for n in r.notes]
        if notes:
            print("\nnotes:")
            for n in notes:
                print(f"  - {n}")

        true_med = next((r["median_ms"] for r in rows
                         if r["workload"] == "true" and r["runtime"] == "secfilt-runtime"), None)
        run_argv = ["--root", str(tmp / "root-secfilt"), "run", "--bundle",
                    str(bundles["true"]), "bimport"]
        split = startup_split(cmd, shim, true_med, a.startup_runs, run_argv)
        print_split(split)
        seccomp_report = None
        if a.seccomp_runs:
            seccomp_report = _seccomp_section(tmp, cmd, rootfs, a.seccomp_runs)

        caches = ("seccomp-cache", "validation-cache")  # meant to outlive containers
        leftovers = [str(p) for r in runtimes if r.root and r.root.exists()
                     for p in r.root.iterdir() if p.name not in caches]
        if leftovers:
            print(f"\nwarning: state left behind: {', '.join(leftovers)}", file=sys.stderr)
        if a.json:
            a.json.write_text(json.dumps({**info, "rows": rows, "notes": notes,
                                          "startup": split, "seccomp": seccomp_report,
                                          "samples_ms": all_times},
                                         indent=2) + "\n")
        return 0
    finally:
        for wk in workers:
            with contextlib.suppress(Exception):
                wk.close()
        if a.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _seccomp_section(tmp: Path, cmd: list[str], rootfs: Path, runs: int) -> dict[str, Any]:
    """Cold (compiled) and warm (cached) seccomp filters; see bench/seccomp_cache.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import seccomp_cache

    work = tmp / "seccomp"
    bundle = work / "bundle"
    bundle.mkdir(parents=True)
    config = json.loads((REPO / "tests" / "data" / "reference" / "real-configs" /
                         "podman-4.3-run.json").read_text())
    spec = {"ociVersion": "1.2.0", "process": {"args": ["/bin/true"], "cwd": "/",
                                               "env": ["PATH=/bin"]},
            "root": {"path": str(rootfs), "readonly": True},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}],
                      "seccomp": config["linux"]["seccomp"]}}
    (bundle / "config.json").write_text(json.dumps(spec))
    run_argv = [*cmd, "--root", "{root}", "run", "--bundle", str(bundle), "{id}"]
    report = seccomp_cache.measure(work, interpreter_of(cmd), runs, run_argv)
    seccomp_cache.print_report(report)
    return report


if __name__ == "__main__":
    sys.exit(main())
