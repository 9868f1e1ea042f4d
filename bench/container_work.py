#!/usr/bin/env python3
"""Real jobs in containers: runc with podman's default seccomp profile, against secfilt-runtime
with the same profile, without and with a secfilter policy.

Issue 7 wants real work's ratio to runc with podman's default profile as well as to no policy
(bench.py's `work` section: `secfilt` against none on the host). Each job runs in a container
whose root filesystem is the host's programs (the host's /usr and /etc bound read-only, the
interpreter's prefix when it lies outside /usr) plus the job's work directory, bound read-write
at its host path, so the same command line runs on the host and in every container. The
process takes podman 4.3's capabilities and seccomp profile (tests/data/reference), the
namespaces and mounts of `runc spec`.

A job is timed inside its container by bench/progs/timeit (static): each runtime's start-up and
teardown are the `start` section's figures, not the job's. Runtimes are interleaved round by
round, order rotated. Nothing is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PODMAN_CONFIG = REPO / "tests" / "data" / "reference" / "real-configs" / "podman-4.3-run.json"
# merged /usr (Debian 12): the top-level program directories are links into it
USR_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


def build_timeit(work: Path) -> Path:
    out = work / "timeit"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(BENCH / "progs" / "timeit.c")],
                   check=True)
    return out


def host_binds(work: Path) -> list[str]:
    """Host directories the container sees at their own paths, read-only but `work`: /usr,
    /etc, and the interpreter the imports job runs where it lies outside /usr (pyenv, /opt,
    a virtual environment and the installation it was made from)."""
    binds = ["/usr", "/etc"]
    for prefix in (sys.prefix, sys.base_prefix):
        prefix = os.path.realpath(prefix)
        if prefix != "/usr" and not prefix.startswith("/usr/") and prefix not in binds:
            binds.append(prefix)
    return [*binds, str(work)]


def make_rootfs(work: Path) -> Path:
    rootfs = work / "rootfs"
    rootfs.mkdir()
    for name, target in USR_LINKS.items():
        if os.path.islink(f"/{name}"):
            (rootfs / name).symlink_to(target)
    for d in ("proc", "dev", "sys", "tmp", "run"):
        (rootfs / d).mkdir()
    for path in host_binds(work):
        (rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return rootfs


def spec_base(work: Path) -> dict[str, Any]:
    """`runc spec`, with podman's capabilities and seccomp profile."""
    specdir = work / "spec"
    specdir.mkdir()
    subprocess.run(["runc", "spec"], cwd=specdir, check=True)
    cfg = json.loads((specdir / "config.json").read_text())
    podman = json.loads(PODMAN_CONFIG.read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["capabilities"] = podman["process"]["capabilities"]
    cfg["linux"]["seccomp"] = podman["linux"]["seccomp"]
    cfg["root"] = {"path": str(make_rootfs(work)), "readonly": True}
    for path in host_binds(work):
        options = ["rbind", "nosuid"] + (["rw"] if path == str(work) else ["ro"])
        cfg["mounts"].append({"destination": path, "type": "bind", "source": path,
                              "options": options})
    return cfg


def make_bundle(work: Path, base: dict[str, Any], name: str, argv: list[str],
                annotations: dict[str, str]) -> Path:
    cfg = json.loads(json.dumps(base))
    cfg["process"]["args"] = [str(work / "timeit"), *argv]
    cfg["annotations"] = annotations
    bundle = work / "bundles" / name
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(cfg, indent=1))
    return bundle


def run_in(runtime: list[str], root: Path, bundle: Path, cid: str) -> float:
    """The job's seconds, as timed inside the container; with no runtime, on the host, with
    the container process's arguments, environment and working directory."""
    if runtime:
        argv, env, cwd = [*runtime, "--root", str(root), "run", "--bundle", str(bundle), cid], \
            None, None
    else:
        process = json.loads((bundle / "config.json").read_text())["process"]
        argv, cwd = process["args"], process["cwd"]
        env = dict(e.split("=", 1) for e in process["env"])
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=env, cwd=cwd, check=False)
    finally:
        if runtime:
            # a run killed (^C) or failed midway may leave its container: the state directory
            # goes with the work directory, after which nothing could delete it
            subprocess.run([*runtime, "--root", str(root), "delete", "--force", cid],
                           stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} {bundle.name}: exit {p.returncode}: "
                           f"{p.stderr.strip()[-500:]}")
    return float(p.stdout.split()[-1])


def measure(work: Path, jobs: dict[str, list[str]], policy: dict[str, str],
            secfilt_runtime: list[str], rounds: int) -> dict[str, Any]:
    """Per job, the median seconds in each container and the ratios. `work`: the directory
    the jobs work in (bound read-write); `policy`: the secfilter annotations."""
    if not shutil.which("runc"):
        return {"skipped": "runc is not installed"}
    build_timeit(work)
    base = spec_base(work)
    variants = {
        "none": ([], {}),  # the same timed job on the host, in the same rounds
        "runc": (["runc"], {}),
        "secfilt-runtime": (secfilt_runtime, {}),
        "secfilt-runtime + policy": (secfilt_runtime, policy),
    }
    roots = {name: work / f"root-{i}" for i, name in enumerate(variants)}
    out: dict[str, Any] = {}
    count = 0
    for job, argv in jobs.items():
        samples: dict[str, list[float]] = {v: [] for v in variants}
        bundles = {v: make_bundle(work, base, f"{len(out)}-{i}", argv, annotations)
                   for i, (v, (_, annotations)) in enumerate(variants.items())}
        names = list(variants)
        for r in range(rounds):
            for v in names[r % len(names):] + names[:r % len(names)]:
                os.sync()  # an untar's writeback must not land on the next run
                count += 1
                samples[v].append(run_in(variants[v][0], roots[v], bundles[v],
                                         f"cw{os.getpid()}-{count}"))
        med = {v: statistics.median(s) for v, s in samples.items()}
        out[job] = {**{f"{v} s": m for v, m in med.items()},
                    "policy x runc": med["secfilt-runtime + policy"] / med["runc"],
                    "policy x no policy": med["secfilt-runtime + policy"] /
                    med["secfilt-runtime"],
                    "no policy x runc": med["secfilt-runtime"] / med["runc"],
                    "runc x none": med["runc"] / med["none"],
                    "policy x none": med["secfilt-runtime + policy"] / med["none"]}
    return out


def table(results: dict[str, Any]) -> str:
    for why in ("skipped", "error"):
        if why in results:
            return f"containers: {why} ({results[why]})"
    lines = [f"{'job (timed inside), s':28} {'none':>7} {'runc':>7} {'secfilt':>7} "
             f"{'+policy':>7} {'x runc':>7} {'x no pol':>8} {'runc x none':>11}"]
    for job, r in results.items():
        lines.append(f"{job:28} {r['none s']:7.3f} {r['runc s']:7.3f} "
                     f"{r['secfilt-runtime s']:7.3f} {r['secfilt-runtime + policy s']:7.3f} "
                     f"{r['policy x runc']:7.2f} {r['policy x no policy']:8.2f} "
                     f"{r['runc x none']:11.2f}")
    return "\n".join(lines)
