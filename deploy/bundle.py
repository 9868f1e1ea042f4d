#!/usr/bin/env python3
"""Copy the running Python, secfilt-runtime's source, the distributions it requires and every
shared library they load (dynamic loader included) into one directory that runs on any x86_64
Linux node, whatever its own libc or Python: a node has only to exec the launchers.

usage: bundle.py --requirements SRC            print SRC's dependencies (for pip install)
       bundle.py DEST --source SRC             bundle the project in SRC (pyproject.toml)
       bundle.py DEST DISTRIBUTION...          bundle installed distributions only

The project is taken from its source tree, not built into a wheel first: building needs the
`wheel` package of setuptools < 70.1, which an offline base image may lack.

DEST gets bin/pythonX.Y, lib/pythonX.Y/ (stdlib and site-packages), lib/*.so* with the loader,
and bin/NAME.in for each of the project's console scripts: a launcher with @PREFIX@ to be
replaced by DEST's path on the node (deploy/install.sh does it).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

# Never needed by a runtime, and large: the test suite, GUIs, the static libpython.
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo",
               "ensurepip", "lib2to3", "venv"}
# the launchers run without -O: bytecode of the optimization levels is never read
BYTECODE_SKIP = ("*.opt-1.pyc", "*.opt-2.pyc")
DYNLOAD_SKIP = ("_tkinter", "_test", "xxlimited", "_ctypes_test", "_xxtestfuzz")
LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
            "/lib", "/usr/lib", "/usr/local/lib")
# pyseccomp opens libseccomp by name at import: it must travel with the bundle.
EXTRA_LIBS = ("libseccomp.so.2",)

LAUNCHER = """#!/bin/sh
# {name} from its bundle: its own loader, libraries and Python, so the node's libc and Python
# do not matter. PYTHONPATH from an engine's environment is dropped; -P keeps the current
# directory (an engine's bundle directory) off sys.path; -S skips site (~25 ms of every
# command with the bundle's sitecustomize): the bundle's site-packages is put on sys.path here.
unset PYTHONPATH PYTHONSTARTUP PYTHONUSERBASE
PYTHONHOME=@PREFIX@ exec @PREFIX@/lib/{loader} --library-path @PREFIX@/lib \\
    @PREFIX@/bin/{python} -S -s -P -c \\
    'import sys; sys.path.append("@PREFIX@/lib/{python}/site-packages"); import {hook}; \\
sys.argv[0] = "{name}"; from {module} import {func}; sys.exit({func}())' "$@"
"""

# The bundle's libraries are in no ldconfig cache: ctypes.util.find_library (pyseccomp uses it
# to open libseccomp) must find them here first, as the loader's --library-path makes dlopen
# do. Set up only when pyseccomp is imported: ctypes.util brings shutil and subprocess (~20 ms),
# which no other command needs. The launchers import the hook; sitecustomize does for any
# other use of the bundle's Python.
FIND_LIBRARY_HOOK = "_secfilt_bundle_libs"
FIND_LIBRARY_MODULE = '''"""Written by deploy/bundle.py: find_library looks in the bundle first,
from the moment pyseccomp is imported."""
import os
import sys


def _find_library_in_bundle_first():
    import ctypes.util

    bundle_lib = os.path.join(sys.prefix, "lib")
    system_find_library = ctypes.util.find_library

    def find_library(name):
        prefix = "lib" + name + ".so."
        try:
            names = sorted(f for f in os.listdir(bundle_lib) if f.startswith(prefix))
        except OSError:
            names = []
        return names[0] if names else system_find_library(name)

    ctypes.util.find_library = find_library


class _BeforePyseccomp:
    """A finder that finds nothing: it patches find_library as pyseccomp is looked up."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "pyseccomp":
            sys.meta_path.remove(_BeforePyseccomp)
            _find_library_in_bundle_first()
        return None


if _BeforePyseccomp not in sys.meta_path:
    sys.meta_path.insert(0, _BeforePyseccomp)
'''
SITECUSTOMIZE = f'''"""Written by deploy/bundle.py."""
import {FIND_LIBRARY_HOOK}  # noqa: F401
'''


def requirement_name(req: str) -> str | None:
    """The distribution a Requires-Dist line names, None for an extra's requirement."""
    if "extra ==" in req.replace("extra==", "extra =="):
        return None
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return m.group(1) if m else None


def closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions `names` need, transitively. A requirement that is not
    installed is one its platform marker excludes (pip installed what applied)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name in names:
                sys.exit(f"bundle.py: distribution {name} is not installed")
            continue
        seen[key] = dist
        todo += [n for r in dist.requires or [] if (n := requirement_name(r))]
    return list(seen.values())


def copy_distribution(dist: metadata.Distribution, site: Path) -> None:
    for rel in dist.files or []:
        src = Path(dist.locate_file(rel)).resolve()
        if not src.is_file() or ".." in Path(rel).parts or rel.name.startswith("__editable__"):
            continue  # scripts in bin/ live outside site-packages; editable hooks point away
        dest = site / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def interpreter_of(elf: Path) -> str:
    """PT_INTERP of a 64-bit ELF executable: the dynamic loader it asks for."""
    data = elf.read_bytes()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        off = phoff + i * phentsize
        p_type, = struct.unpack_from("<I", data, off)
        if p_type == 3:  # PT_INTERP
            p_offset, = struct.unpack_from("<Q", data, off + 8)
            p_filesz, = struct.unpack_from("<Q", data, off + 32)
            return data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    sys.exit(f"bundle.py: {elf} has no program interpreter")


def needed_libraries(loader: str, elf: Path) -> dict[str, str]:
    """soname -> path of what the loader would map for `elf` (ld.so --list, which is ldd)."""
    out = subprocess.run([loader, "--list", str(elf)], capture_output=True, text=True).stdout
    libs = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line)
        if m:
            libs[m.group(1)] = m.group(2)
    return libs


def find_library_file(soname: str) -> str:
    for d in LIB_DIRS:
        if os.path.exists(os.path.join(d, soname)):
            return os.path.join(d, soname)
    sys.exit(f"bundle.py: {soname} not found in {', '.join(LIB_DIRS)} (install it)")


def project(src: Path) -> dict:
    with open(src / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def commands(src: Path) -> dict[str, str]:
    """name -> module:function of the commands that the project installs as launcher scripts
    (bin/ in pyproject.toml's [tool.secfilt-runtime.commands]) rather than console scripts."""
    with open(src / "pyproject.toml", "rb") as f:
        return tomllib.load(f).get("tool", {}).get("secfilt-runtime", {}).get("commands", {})


def copy_source_packages(src: Path, site: Path) -> None:
    """The packages under the project's source root (setuptools' find where=...)."""
    with open(src / "pyproject.toml", "rb") as f:
        where = tomllib.load(f).get("tool", {}).get("setuptools", {}).get(
            "packages", {}).get("find", {}).get("where", ["."])
    for root in where:
        for pkg in sorted((src / root).iterdir()):
            if (pkg / "__init__.py").is_file():
                shutil.copytree(pkg, site / pkg.name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))


def bundle(dest: Path, names: list[str], src: Path | None = None) -> None:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    exe = Path(sys.executable).resolve()
    loader = interpreter_of(exe)
    lib, bindir = dest / "lib", dest / "bin"
    stdlib_dest, site = lib / version, lib / version / "site-packages"
    for d in (bindir, site):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy2(exe, bindir / version)
    stdlib = Path(sysconfig.get_path("stdlib"))
    for entry in stdlib.iterdir():
        if entry.name in STDLIB_SKIP or entry.name.startswith("config-"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, stdlib_dest / entry.name, dirs_exist_ok=True, symlinks=True,
                            ignore=shutil.ignore_patterns(*BYTECODE_SKIP))
        else:
            shutil.copy2(entry, stdlib_dest / entry.name)
    for so in (stdlib_dest / "lib-dynload").glob("*.so"):
        if so.name.startswith(DYNLOAD_SKIP):
            so.unlink()
    scripts = {}
    if src is not None:
        meta = project(src)
        names = [*names, *(n for r in meta.get("dependencies", [])
                           if (n := requirement_name(r)))]
        copy_source_packages(src, site)
        scripts = meta.get("scripts") or commands(src)
    for dist in closure(names):
        copy_distribution(dist, site)
    (site / f"{FIND_LIBRARY_HOOK}.py").write_text(FIND_LIBRARY_MODULE)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    subprocess.run([str(exe), "-m", "compileall", "-q", str(site)], check=True)

    wanted = dict(needed_libraries(loader, exe))
    for so in [*dest.rglob("*.so"), *dest.rglob("*.so.*")]:
        wanted.update(needed_libraries(loader, so))
    for soname in EXTRA_LIBS:
        path = find_library_file(soname)
        wanted[soname] = path
        wanted.update(needed_libraries(loader, Path(path)))
    for soname, path in wanted.items():
        shutil.copy2(path, lib / soname)  # follows the symlink: the file under its soname
    shutil.copy2(loader, lib / Path(loader).name)
    for name, target in scripts.items():
        module, func = target.split(":")
        (bindir / f"{name}.in").write_text(LAUNCHER.format(
            name=name, loader=Path(loader).name, python=version, module=module, func=func,
            hook=FIND_LIBRARY_HOOK))


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--requirements"] and len(args) == 2:
        print("\n".join(project(Path(args[1])).get("dependencies", [])))
    elif len(args) == 3 and args[1] == "--source":
        bundle(Path(args[0]).resolve(), [], Path(args[2]).resolve())
    elif len(args) >= 2 and not args[0].startswith("-"):
        bundle(Path(args[0]).resolve(), args[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
