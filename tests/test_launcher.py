"""The installed commands are the launchers of bin/: sh starts the Python installed beside them
under -I -S, and their Python part finds the package as site would, without running the
`import` lines of .pth files. Installed into a fresh venv, a command must ignore PYTHONPATH and
PYTHONHOME and skip .pth hooks, yet find its package and its dependencies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMMANDS: dict[str, str] = PYPROJECT["tool"]["secfilt-runtime"]["commands"]
LAUNCHERS = [REPO / f for f in PYPROJECT["tool"]["setuptools"]["script-files"]]
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def run(argv: list[str | Path], **kw) -> subprocess.CompletedProcess[str]:
    kw.setdefault("timeout", 60)
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)


def probe_of(launcher: Path, dest: Path) -> Path:
    """The launcher with its last line printing where the package came from, whether site ran
    after all (site.main() always installs the help builtin) and sys.path, instead of running
    the command: the Python part as installed, made observable."""
    text = launcher.read_text()
    assert text.endswith("\nsys.exit(main())\n")
    dest.write_text(text.removesuffix("sys.exit(main())\n") + (
        "print(sys.modules['secfilt_runtime'].__file__)\n"
        "print('site ran' if 'help' in dir(__builtins__) else 'no site')\n"
        "print(*sys.path, sep='\\n')\n"))
    return dest


def site_path(python: str | Path) -> list[str]:
    """sys.path once site has run, under -I as the launchers run."""
    return run([python, "-I", "-c", "import sys; print(*sys.path, sep='\\n')"],
               check=True).stdout.splitlines()


def test_launchers_are_the_commands_pyproject_names():
    assert sorted(p.name for p in LAUNCHERS) == sorted(COMMANDS)
    bodies = set()
    for launcher in LAUNCHERS:
        module, func = COMMANDS[launcher.name].split(":")
        text = launcher.read_text()
        assert text.startswith('#!/bin/sh\n""":"\n')  # pip copies a non-python shebang as is
        assert os.access(launcher, os.X_OK)
        assert text.count(f"from {module} import {func}\n") == 2  # first try and after site
        bodies.add(text.replace(f"from {module} import", "from MODULE import")
                   .replace(f"# The {launcher.name} command:", "# The NAME command:"))
    assert len(bodies) == 1, "the launchers differ in more than their command"


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    """A `python3` that prints how it was started, one word a line, in place of running."""
    script = tmp_path / "fake-python3"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$0" "$@"\n')
    script.chmod(0o755)
    return script


def place(launcher: Path, bindir: Path, python: Path | None) -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    dest = bindir / launcher.name
    shutil.copy2(launcher, dest)
    if python is not None:
        shutil.copy2(python, bindir / "python3")
    return dest


ARGS = ["--root", "a b", "", "*", "$HOME"]  # passed on word for word


@pytest.mark.parametrize("launcher", LAUNCHERS, ids=lambda p: p.name)
def test_sh_part_starts_the_python_beside_it_under_I_S(launcher, tmp_path, fake_python):
    real = place(launcher, tmp_path / "venv" / "bin", fake_python)
    py = real.parent / "python3"
    env = {"PATH": CLEAN_PATH}

    # by full path, as PATH lookups and pyenv's shims (`pyenv exec`) run it
    p = run([real, *ARGS], env=env)
    assert p.stdout.split("\n")[:-1] == [str(py), "-I", "-S", str(real), *ARGS], p.stderr

    # by a relative path, and as sh's script operand from its own directory
    for argv in (["./" + real.name], ["sh", real.name]):
        p = run([*argv, *ARGS], env=env, cwd=real.parent)
        assert p.stdout.split("\n")[:-1] == ["./python3", "-I", "-S", "./" + real.name, *ARGS]

    # linked from a directory that has a python3 of its own (pipx puts links in ~/.local/bin):
    # the Python is the one installed beside the link's target
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    decoy = link_dir / "python3"
    shutil.copy2(fake_python, decoy)
    (link_dir / real.name).symlink_to(os.path.relpath(real, link_dir))
    p = run([link_dir / real.name, *ARGS], env=env)
    assert p.stdout.split("\n")[:-1] == [str(py), "-I", "-S", str(real), *ARGS]
    assert str(decoy) not in p.stdout


@pytest.mark.parametrize("launcher", LAUNCHERS, ids=lambda p: p.name)
def test_sh_part_without_a_python_beside_takes_the_first_on_path(launcher, tmp_path,
                                                                   fake_python):
    """Debian's pip puts commands in /usr/local/bin, its Python is /usr/bin/python3."""
    lone = place(launcher, tmp_path / "usr-local-bin", None)
    on_path = place(launcher, tmp_path / "usr-bin", fake_python).parent / "python3"
    p = run([lone, *ARGS], env={"PATH": f"{lone.parent}:{on_path.parent}:{CLEAN_PATH}"})
    assert p.stdout.split("\n")[:-1] == [str(on_path), "-I", "-S", str(lone), *ARGS], p.stderr


@pytest.mark.parametrize("launcher", LAUNCHERS, ids=lambda p: p.name)
def test_python_part_finds_the_package_on_the_path_site_would_give(launcher, tmp_path):
    """This interpreter, as the tests found the package (an editable install here)."""
    probe = probe_of(launcher, tmp_path / "probe")
    p = run([sys.executable, "-I", "-S", probe], env={"PATH": CLEAN_PATH})
    assert p.returncode == 0, p.stderr
    where, ran, *path = p.stdout.splitlines()
    assert (ran, path) == ("no site", site_path(sys.executable))
    assert Path(where).parent.name == "secfilt_runtime"


def make_venv(where: Path, *flags: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", *flags, str(where)], check=True, timeout=120)
    return where / "bin"


def site_packages(bindir: Path) -> Path:
    return Path(run([bindir / "python3", "-c", "import sysconfig; "
                     "print(sysconfig.get_path('purelib'))"], check=True).stdout.strip())


def test_python_part_falls_back_to_site_for_a_layout_it_does_not_know(tmp_path):
    """The package reachable only through a .pth hook (as some editable installs are): the
    launcher skips hooks, then runs site after all, slower but working."""
    bindir = make_venv(tmp_path / "venv", "--without-pip")
    hooked = site_packages(bindir) / "hooked.pth"
    hooked.write_text(f"import sys; sys.path.append({str(REPO / 'runtime')!r})\n")
    launcher = place(REPO / "bin" / "secfilt-runtime", bindir, None)
    p = run([launcher, "--version"], env={"PATH": CLEAN_PATH})
    assert p.returncode == 0 and p.stdout.startswith("secfilt-runtime version "), p.stderr


def test_installed_commands_are_the_launchers():
    """This interpreter's commands (tests/run.sh installs the checkout) are today's launchers:
    otherwise `pip install -e .` was not run again after bin/ changed."""
    bindir = Path(sys.executable).parent
    if not (bindir / "secfilt-runtime").exists():
        pytest.skip(f"secfilt-runtime is not installed in {bindir}")
    for launcher in LAUNCHERS:
        assert (bindir / launcher.name).read_bytes() == launcher.read_bytes(), \
            f"{bindir / launcher.name} is stale: run pip install -e {REPO}"


@pytest.mark.install
@pytest.mark.skipif(sys.prefix != sys.base_prefix,
                    reason="the fresh venv takes the dependencies from this interpreter's "
                           "site-packages, which a venv's venv does not see")
def test_fresh_venv_install_runs_both_commands_isolated_and_without_site(tmp_path):
    # --system-site-packages: the dependencies come from this interpreter, as pyvenv.cfg lets
    # site find them; so must the launchers. No --no-deps would fetch them all from PyPI.
    bindir = make_venv(tmp_path / "venv", "--system-site-packages")
    p = run([bindir / "python3", "-m", "pip", "install", "-q", "--no-deps",
             "--disable-pip-version-check", REPO], timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    site_dir = site_packages(bindir)
    for launcher in LAUNCHERS:
        assert (bindir / launcher.name).read_bytes() == launcher.read_bytes()

    # a .pth hook of the venv runs whenever site does (checked), never for the commands
    hook_ran = tmp_path / "hook-ran"
    (site_dir / "zz-hook.pth").write_text(f"import os; open({str(hook_ran)!r}, 'w').close()\n")
    run([bindir / "python3", "-c", "pass"], check=True)
    assert hook_ran.exists()
    hook_ran.unlink()

    # a package of the runtime's name in PYTHONPATH and the current directory, PYTHONHOME
    # pointing there too: an engine's environment must not pick the code that runs as root
    evil = tmp_path / "evil"
    (evil / "secfilt_runtime").mkdir(parents=True)
    poisoned = tmp_path / "poisoned"
    (evil / "secfilt_runtime" / "__init__.py").write_text(
        f"open({str(poisoned)!r}, 'w').close()\n")
    env = {"PATH": CLEAN_PATH, "PYTHONPATH": str(evil), "PYTHONHOME": str(evil)}

    p = run([bindir / "secfilt-runtime", "--version"], env=env, cwd=evil)
    assert p.returncode == 0 and p.stdout.startswith("secfilt-runtime version "), p.stderr
    p = run([bindir / "secfilt", "--help"], env=env, cwd=evil)
    assert p.returncode == 0 and p.stdout.startswith("usage: secfilt "), p.stderr
    # imports pyseccomp, found only in the base's site-packages through pyvenv.cfg
    p = run([bindir / "secfilt", "--read-only=1", "/bin/true"], env=env, cwd=evil)
    assert p.returncode == 0, p.stderr
    assert not poisoned.exists() and not hook_ran.exists()

    # the package the commands run is the one installed in the venv, on site's sys.path
    for launcher in LAUNCHERS:
        probe = probe_of(bindir / launcher.name, tmp_path / f"probe-{launcher.name}")
        p = run([bindir / "python3", "-I", "-S", probe], env=env)
        where, ran, *path = p.stdout.splitlines()
        assert Path(where) == site_dir / "secfilt_runtime" / "__init__.py", p.stderr
        assert (ran, path) == ("no site", site_path(bindir / "python3"))
