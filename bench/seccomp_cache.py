"""Cold and warm preparation of seccomp filters: compiled by libseccomp, or loaded from the cache.

Each sample is a fresh interpreter (imports count, as they do for a real start) running
`seccomp.prepare` on podman's default profile; "cold" empties the cache directory before each
run, "warm" leaves the entry from the previous one. Also reports whether the warm path imported
pyseccomp (it must not) and the time of whole `run`s of /bin/true with that profile.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PODMAN = REPO / "tests" / "data" / "reference" / "real-configs" / "podman-4.3-run.json"

_PREPARE = """
import sys, json, time
from secfilt_runtime import seccomp
section = json.loads(open(sys.argv[1]).read())
t = time.perf_counter()
f = seccomp.prepare(section, None, cache_dir=sys.argv[2])
ms = (time.perf_counter() - t) * 1000
print(json.dumps({"pyseccomp": "pyseccomp" in sys.modules, "ms": ms,
                  "bytes": sum(len(p.bpf) for p in f.programs)}))
"""


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}...: exit {p.returncode}: {p.stderr.strip()}")
    return (time.perf_counter() - t) * 1000, p.stdout


def measure(tmp: Path, python: str, runs: int, run_argv: list[str] | None = None
            ) -> dict[str, Any]:
    """prepare() cold and warm, `runs` times each, in `tmp`; with run_argv (a secfilt-runtime
    command line up to the bundle, {root} and {bundle} filled in), whole runs too."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "runtime"))
    section = tmp / "seccomp.json"
    section.write_text(json.dumps(json.loads(PODMAN.read_text())["linux"]["seccomp"]))
    cache = tmp / "seccomp-cache"
    argv = [python, "-c", _PREPARE, str(section), str(cache)]
    out: dict[str, Any] = {"profile": "podman-4.3 default", "runs": runs}
    for mode in ("cold", "warm"):
        samples, inner, info = [], [], {}
        if mode == "warm":
            _timed(argv, env)  # fill the cache
        for _ in range(runs):
            if mode == "cold":
                shutil.rmtree(cache, ignore_errors=True)
            ms, stdout = _timed(argv, env)
            samples.append(ms)
            info = json.loads(stdout)
            inner.append(info["ms"])
        out[f"prepare_{mode}_ms"] = statistics.median(samples)
        out[f"prepare_{mode}_call_ms"] = statistics.median(inner)
        out[f"prepare_{mode}_imports_pyseccomp"] = info["pyseccomp"]
        out["bpf_bytes"] = info["bytes"]
    base = [python, "-c", "import secfilt_runtime.seccomp"]
    out["import_only_ms"] = statistics.median(_timed(base, env)[0] for _ in range(runs))
    if run_argv is not None:
        for mode in ("cold", "warm"):
            samples = []
            for i in range(runs):
                if mode == "cold":
                    shutil.rmtree(tmp / "root" / "seccomp-cache", ignore_errors=True)
                cid = f"sc-{mode}-{i}-{uuid.uuid4().hex[:8]}"
                argv2 = [a.format(root=tmp / "root", id=cid) for a in run_argv]
                samples.append(_timed(argv2, env)[0])
            out[f"run_{mode}_ms"] = statistics.median(samples)
    return out


def print_report(r: dict[str, Any]) -> None:
    print(f"\nseccomp filter preparation ({r['profile']}, {r['bpf_bytes']} bytes of BPF, "
          f"median of {r['runs']} fresh interpreters):")
    print(f"  import secfilt_runtime.seccomp only : {r['import_only_ms']:7.1f} ms")
    for mode in ("cold", "warm"):
        imported = "imports" if r[f"prepare_{mode}_imports_pyseccomp"] else "does not import"
        print(f"  prepare, {mode} cache                : {r[f'prepare_{mode}_ms']:7.1f} ms "
              f"process, {r[f'prepare_{mode}_call_ms']:6.1f} ms the call itself "
              f"({imported} pyseccomp)")
    if "run_cold_ms" in r:
        print(f"  run /bin/true, cold / warm cache    : {r['run_cold_ms']:7.1f} / "
              f"{r['run_warm_ms']:.1f} ms")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="secfilt-seccomp-bench.") as d:
        print_report(measure(Path(d), sys.executable, int(sys.argv[1]) if len(sys.argv) > 1
                             else 10))
