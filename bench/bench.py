#!/usr/bin/env python3
"""The one bench command: every figure of issue 7 measured in one run, as ratios.

    sudo bench/bench.py [--quick] [--out DIR]

Sections (each also runs alone):
  start     `run` of /bin/true against runc and crun, seccomp cache cold/warm (run_bench.py)
  hot       `state`, `kill`, `delete` against a bare `python -I -c pass`
  syscalls  one judged call against the same call bare, under a null tracer and strace
            (syscall_cost.py), and an unjudged call under a policy
  work      real jobs under `secfilt` with a policy against no policy: untar into an allowed
            directory, a shell forking 1000 processes, an import-heavy Python program
  containers the same jobs in containers, timed inside: runc with podman's default seccomp
            profile against secfilt-runtime with it, without and with the policy
            (container_work.py)
  memory    peak RSS of the runtime's `run` and of secfilt (whose parent is the tracer)

Writes DIR/results.json and, when matplotlib is installed, DIR/results.png; prints the tables.
Nothing is asserted: the ratios are the result and hold for the machine that measured them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import container_work  # noqa: E402 - sibling modules, found through the path above
import syscall_cost  # noqa: E402


def job_policy(allowed: Path) -> dict[str, str]:
    """The policy the real jobs run under, `secfilt`'s keys (its flags; org.secfilter.* in a
    container): read-only but `allowed`, connections within loopback."""
    return {"read-only": "true", "allow-write": str(allowed), "allowed-netmask": "127.0.0.0/8"}


def secfilt_runtime() -> list[str]:
    found = syscall_cost.installed("secfilt-runtime")
    return [found] if found else [sys.executable, "-m", "secfilt_runtime"]


def secfilt() -> list[str]:
    return syscall_cost.secfilt_command()


def timed(argv: list[str], **kw: Any) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, **kw)
    return time.perf_counter() - t0


def interleaved(cases: dict[str, list[str]], rounds: int, settle: bool = False
                ) -> dict[str, float]:
    """Median seconds per case, every case once per round, order rotated. `settle`: write
    back dirty pages before each run (untimed), so no run pays for the one before it (an untar
    leaves ~80 MB for the writeback to compete with whatever runs next)."""
    samples: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if settle:
                os.sync()
            samples[name].append(timed(cases[name]))
    return {k: statistics.median(v) for k, v in samples.items()}


# ------------------------------------------------------------------------------ sections

def start_section(out: Path, quick: bool) -> dict[str, Any]:
    argv = [sys.executable, str(BENCH / "run_bench.py"), "--json", str(out / "start.json"),
            "--workloads", "true,true-policy,lifecycle"]
    if quick:
        argv += ["-n", "3", "--warmup", "1", "--startup-runs", "2", "--seccomp-runs", "2"]
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    print(p.stdout)
    if p.returncode != 0:
        return {"error": p.stderr[-2000:]}
    return json.loads((out / "start.json").read_text())


def hot_section(quick: bool) -> dict[str, float]:
    """`state`/`kill`/`delete` of an unknown id cost what the command's start-up costs: the
    path engines call constantly, against the floor of any Python command."""
    root = tempfile.mkdtemp(prefix="secfilt-bench-hot-")
    rt = [*secfilt_runtime(), "--root", root]
    cases = {
        "python -I -c pass": [sys.executable, "-I", "-c", "pass"],
        # the launchers' own start (bin/): the floor once site's hooks are not run
        "python -I -S -c pass": [sys.executable, "-I", "-S", "-c", "pass"],
        "state": [*rt, "state", "nosuch"],
        "kill": [*rt, "kill", "nosuch", "TERM"],
        "delete": [*rt, "delete", "nosuch"],
    }
    if shutil.which("runc"):
        cases["runc state"] = ["runc", "--root", root, "state", "nosuch"]
    medians = interleaved(cases, 5 if quick else 40)
    shutil.rmtree(root, ignore_errors=True)
    floor = medians["python -I -c pass"]
    return {k: {"ms": v * 1000, "x python": v / floor} for k, v in medians.items()}


def syscalls_section(quick: bool) -> list[dict[str, Any]]:
    from dataclasses import asdict

    return [asdict(r) for r in syscall_cost.measure(rounds=2 if quick else 5, quick=quick)]


def prepare_jobs(work: Path, quick: bool) -> tuple[dict[str, list[str]], Path]:
    """The real jobs, as command lines that run alike on the host and in a container that shows
    `work` at its own path (container_work); and the directory they are allowed to write."""
    allowed = work / "allowed"
    allowed.mkdir()
    tarball = work / "tree.tar"
    # a source tree: this project's own files, several times over
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(REPO), "runtime", "tests", "docs"],
                   check=True)
    forks = 100 if quick else 1000

    def untar_into(tar: Path) -> list[str]:
        return ["sh", "-c", f'rm -rf "{allowed}/x" && mkdir "{allowed}/x" && '
                f'tar -xf "{tar}" -C "{allowed}/x"']

    jobs = {"untar": untar_into(tarball)}
    if not quick:
        # a larger one, where the per-file cost shows rather than secfilt's start-up: the
        # interpreter's standard library sources, without site-packages, tests and bytecode
        stdlib = Path(os.__file__).parent
        big_tarball = work / "stdlib.tar"
        subprocess.run(["tar", "-cf", str(big_tarball), "--exclude=site-packages",
                        "--exclude=__pycache__", "--exclude=test", "--exclude=tests",
                        "-C", str(stdlib.parent), stdlib.name], check=True)
        jobs[f"untar stdlib ({tar_members(big_tarball)} entries)"] = untar_into(big_tarball)
    jobs["fork"] = ["sh", "-c",
                    f"i=0; while [ $i -lt {forks} ]; do /bin/true; i=$((i+1)); done"]
    jobs["python imports"] = [sys.executable, "-c", "import asyncio, email.parser, json, "
                              "http.client, xml.dom.minidom, decimal, unittest, argparse, "
                              "sqlite3, ssl"]
    return jobs, allowed


def work_section(quick: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="secfilt-bench-work-"))
    try:
        jobs, allowed = prepare_jobs(work, quick)
        policy = [*secfilt(), *(f"--{k}={v}" for k, v in job_policy(allowed).items())]
        results = {}
        for name, job in jobs.items():
            m = interleaved({"none": job, "policy": [*policy, *job]}, 2 if quick else 7,
                            settle=True)
            results[name] = {"none s": m["none"], "policy s": m["policy"],
                             "x none": m["policy"] / m["none"]}
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def containers_section(quick: bool) -> dict[str, Any]:
    """The same jobs in containers: runc with podman's default profile against secfilt-runtime
    with that profile, without and with the policy `work` gives `secfilt` (container_work)."""
    work = Path(tempfile.mkdtemp(prefix="secfilt-bench-ctr-"))
    try:
        jobs, allowed = prepare_jobs(work, quick)
        policy = {f"org.secfilter.{k}": v for k, v in job_policy(allowed).items()}
        return container_work.measure(work, jobs, policy, secfilt_runtime(),
                                      2 if quick else 7)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        # the other sections' figures are still written
        print(f"containers: {e}", file=sys.stderr)
        return {"error": str(e)[-2000:]}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def tar_members(tar: Path) -> int:
    return len(subprocess.run(["tar", "-tf", str(tar)], capture_output=True, text=True,
                              check=True).stdout.splitlines())


def peak_rss_kib(argv: list[str]) -> int:
    """Peak RSS of the largest process of argv's tree (RUSAGE_CHILDREN is a maximum)."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       check=False)
    return int(p.stdout.strip() or 0)


def memory_section() -> dict[str, int]:
    bundle = REPO / "bundles" / "busybox"
    root = tempfile.mkdtemp(prefix="secfilt-bench-rss-")
    out = {"secfilt (tracer) KiB": peak_rss_kib([*secfilt(), "--read-only=1", "/bin/true"])}
    if (bundle / "rootfs").is_dir():
        out["run KiB"] = peak_rss_kib([*secfilt_runtime(), "--root", root, "run", "--bundle",
                                       str(bundle), "rss-probe"])
    shutil.rmtree(root, ignore_errors=True)
    out["python -c pass KiB"] = peak_rss_kib([sys.executable, "-c", "pass"])
    return out


# ------------------------------------------------------------------------------ output

def chart(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels, values = [], []
    for row in (results.get("start") or {}).get("rows", []):
        if row["runtime"] == "secfilt-runtime":
            for other in ("runc", "crun"):
                labels.append(f"{row['workload']}: secfilt-runtime / {other}")
                values.append(row[f"vs_{other}"])
    for name, row in results.get("hot", {}).items():
        labels.append(f"{name} / python")
        values.append(row["x python"])
    for name, row in results.get("work", {}).items():
        labels.append(f"{name} / none")
        values.append(row["x none"])
    for name, row in results.get("containers", {}).items():
        if isinstance(row, dict):  # not {"skipped" or "error": why}
            labels.append(f"{name}, in a container with the policy / runc")
            values.append(row["policy x runc"])
    by_case: dict[str, dict[str, float]] = {}
    for row in results.get("syscalls", []):
        by_case.setdefault(row["case"], {})[row["variant"]] = row["ns_per_call"]
    for case, v in by_case.items():
        if "secfilt" in v and "null" in v:
            labels.append(f"{case}: secfilt / null tracer")
            values.append(v["secfilt"] / v["null"])
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(labels) + 1))
    ax.barh(labels, values)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("ratio (log scale; 1 = as fast as the baseline)")
    ax.set_title(f"secfilt-runtime, {platform.node()}, {time.strftime('%Y-%m-%d')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few rounds: proves it works")
    ap.add_argument("--out", type=Path, default=BENCH / "results")
    ap.add_argument("--sections", default="start,hot,syscalls,work,containers,memory")
    ap.add_argument("--chart-only", type=Path, metavar="RESULTS_JSON",
                    help="draw the chart of an earlier run into --out, measure nothing")
    args = ap.parse_args()
    if args.chart_only:
        args.out.mkdir(parents=True, exist_ok=True)
        return 0 if chart(json.loads(args.chart_only.read_text()), args.out / "results.png") \
            else 1
    if os.geteuid() != 0:
        print("bench: run as root (containers)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    results: dict[str, Any] = {"machine": {"kernel": platform.release(),
                                           "cpus": os.cpu_count(),
                                           "python": platform.python_version()},
                               "quick": args.quick}
    if "start" in sections:
        results["start"] = start_section(args.out, args.quick)
    if "hot" in sections:
        results["hot"] = hot_section(args.quick)
        print("\n".join(f"{k:20} {v['ms']:8.1f} ms  x python {v['x python']:.2f}"
                        for k, v in results["hot"].items()))
    if "syscalls" in sections:
        results["syscalls"] = syscalls_section(args.quick)
        print(syscall_cost.table([syscall_cost.Row(**r) for r in results["syscalls"]]))
    if "work" in sections:
        results["work"] = work_section(args.quick)
        print("\n".join(f"{k:16} none {v['none s']:.3f} s  policy {v['policy s']:.3f} s  "
                        f"x {v['x none']:.2f}" for k, v in results["work"].items()))
    if "containers" in sections:
        results["containers"] = containers_section(args.quick)
        print(container_work.table(results["containers"]))
    if "memory" in sections:
        results["memory"] = memory_section()
        print(results["memory"])
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    drew = chart(results, args.out / "results.png")
    print(f"wrote {args.out / 'results.json'}" + (f" and {args.out / 'results.png'}"
                                                  if drew else " (no matplotlib: no chart)"))
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
