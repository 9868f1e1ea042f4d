"""The runc-compatible command line: a hand-written argv front, so that the commands engines
call constantly (state, kill, start, delete) import nothing heavy (no typer, pydantic,
jsonschema or libseccomp). The surface is runc's fixed contract: global options first, then
the command; a command's options may come before or after the container id (`create ID
--bundle B`), and exec's command starts at the first argument after the id.
"""

from __future__ import annotations

import errno
import os
import sys

from . import jsonio
from .errors import ConfigError, SecfiltError
from .log import log
from .state import DEFAULT_ROOT, StateStore

VERSION = "0.1.0"
SPEC_VERSION = "1.2.0"


class UsageError(SecfiltError):
    """A malformed command line."""


class Flag:
    """One option. Plain classes here, not dataclasses: see state.State."""

    __slots__ = ("names", "dest", "value", "repeat")

    def __init__(self, names: tuple[str, ...], dest: str, value: bool = False,
                 repeat: bool = False) -> None:
        self.names = names
        self.dest = dest
        self.value = value  # takes a value
        self.repeat = repeat


class Parsed:
    __slots__ = ("opts", "args")

    def __init__(self) -> None:
        self.opts: dict[str, object] = {}
        self.args: list[str] = []


def _f(dest: str, *names: str, value: bool = False, repeat: bool = False) -> Flag:
    return Flag(names, dest, value, repeat)


GLOBAL = (
    _f("root", "--root", value=True), _f("log", "--log", value=True),
    _f("log_format", "--log-format", value=True), _f("debug", "--debug"),
    _f("systemd_cgroup", "--systemd-cgroup"), _f("rootless", "--rootless", value=True),
    _f("criu", "--criu", value=True), _f("version", "--version", "-v"),
    _f("help", "--help", "-h"),
)
_HELP = _f("help", "--help", "-h")
_BUNDLE = _f("bundle", "--bundle", "-b", value=True)
_PID_FILE = _f("pid_file", "--pid-file", value=True)
_CONSOLE = _f("console_socket", "--console-socket", value=True)
_PRESERVE = _f("preserve_fds", "--preserve-fds", value=True)
_FORMAT = _f("format", "--format", "-f", value=True)
_CREATE_FLAGS = (_BUNDLE, _PID_FILE, _CONSOLE, _PRESERVE, _f("no_pivot", "--no-pivot"),
                 _f("no_new_keyring", "--no-new-keyring"))

COMMANDS: dict[str, tuple[tuple[Flag, ...], str]] = {
    # command: (flags, usage of the positional arguments)
    "create": (_CREATE_FLAGS, "ID"),
    "run": (_CREATE_FLAGS + (_f("detach", "--detach", "-d"),),
            "ID|BUNDLE_DIR"),
    "start": ((), "ID"),
    "state": ((), "ID"),
    "kill": ((_f("all", "--all", "-a"),), "ID [SIGNAL]"),
    "delete": ((_f("force", "--force", "-f"),), "ID"),
    "exec": ((_f("process", "--process", "-p", value=True), _f("tty", "--tty", "-t"),
              _CONSOLE, _f("detach", "--detach", "-d"), _PID_FILE,
              _f("cwd", "--cwd", value=True), _f("env", "--env", "-e", value=True, repeat=True),
              _f("user", "--user", "-u", value=True),
              _f("additional_gids", "--additional-gids", "-g", value=True, repeat=True),
              _f("cap", "--cap", "-c", value=True, repeat=True),
              _f("no_new_privs", "--no-new-privs"), _PRESERVE,
              _f("process_label", "--process-label", value=True),
              _f("apparmor", "--apparmor", value=True)), "ID COMMAND [ARGS...]"),
    "list": ((_FORMAT, _f("quiet", "--quiet", "-q")), ""),
    "ps": ((_FORMAT,), "ID"),
    "pause": ((), "ID"),
    "resume": ((), "ID"),
    "update": ((_f("resources", "--resources", "-r", value=True),
                _f("pids_limit", "--pids-limit", value=True),
                _f("memory", "--memory", value=True),
                _f("cpu_shares", "--cpu-shares", value=True),
                _f("cpu_quota", "--cpu-quota", value=True),
                _f("cpu_period", "--cpu-period", value=True)), "ID"),
    "events": ((_f("stats", "--stats"), _f("interval", "--interval", value=True)), "ID"),
    "features": ((), ""),
    "spec": ((_BUNDLE, _f("rootless", "--rootless")), ""),
    "filters": ((_BUNDLE,), ""),
    "check": ((_FORMAT,), ""),
}
_NEEDS_ID = {"create", "start", "state", "kill", "delete", "exec", "ps", "pause", "resume",
             "update", "events"}


def parse_flags(argv: list[str], flags: tuple[Flag, ...], *, stop_after: int | None = None,
                interspersed: bool = True) -> Parsed:
    """Options and positionals. Once `stop_after` positionals are seen, the rest is taken
    as is (exec's command); without interspersed, the first positional ends the options."""
    by_name = {n: f for f in (*flags, _HELP) for n in f.names}
    out = Parsed()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if stop_after is not None and len(out.args) >= stop_after:
            out.args.append(arg)
            out.args.extend(argv[i:])
            break
        if arg == "--":
            out.args.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-" or (out.args and not interspersed):
            out.args.append(arg)
            if not interspersed:
                out.args.extend(argv[i:])
                break
            continue
        name, eq, inline = arg.partition("=")
        flag = by_name.get(name)
        if flag is None:
            raise UsageError(f"No such option: {name}")
        if flag.value:
            if eq:
                value: object = inline
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise UsageError(f"Option {name} requires an argument")
        else:
            if eq:
                value = inline.lower() in ("1", "true", "yes")
                if inline.lower() not in ("0", "1", "true", "false", "yes", "no"):
                    raise UsageError(f"Option {name}: not a boolean: {inline!r}")
            else:
                value = True
        if flag.repeat:
            out.opts.setdefault(flag.dest, [])
            out.opts[flag.dest].append(value)  # type: ignore[union-attr]
        else:
            out.opts[flag.dest] = value
    return out


def _usage(command: str | None = None) -> str:
    if command is None:
        names = ", ".join(sorted(COMMANDS))
        return ("usage: secfilt-runtime [--root DIR] [--log FILE] [--log-format text|json] "
                f"[--debug] COMMAND [OPTIONS] ...\ncommands: {names}\n")
    flags, positional = COMMANDS[command]
    opts = " ".join(f"[{f.names[0]}{' VALUE' if f.value else ''}]" for f in flags)
    return f"usage: secfilt-runtime {command} {opts} {positional}".rstrip() + "\n"


def _int_option(opts: dict[str, object], key: str, flag: str, minimum: int = 0) -> int:
    raw = opts.get(key, "0")
    try:
        value = int(str(raw))
    except ValueError:
        raise UsageError(f"{flag}: not a number: {raw!r}") from None
    if value < minimum:
        raise UsageError(f"{flag}: must be at least {minimum}")
    return value


def _one_id(p: Parsed, command: str, extra: int = 0) -> str:
    if not p.args:
        raise UsageError(f"{command}: the container id is missing\n{_usage(command).strip()}")
    if len(p.args) > 1 + extra:
        raise UsageError(f"{command}: unexpected arguments: {' '.join(p.args[1 + extra:])}")
    return p.args[0]


def dispatch(argv: list[str]) -> int:
    g = parse_flags(argv, GLOBAL, interspersed=False)
    try:
        log.configure(g.opts.get("log"), str(g.opts.get("log_format", "text")),  # type: ignore
                      bool(g.opts.get("debug")))
    except ValueError as e:
        raise UsageError(str(e)) from None
    if g.opts.get("version"):
        sys.stdout.write(f"secfilt-runtime version {VERSION}\nspec: {SPEC_VERSION}\n")
        return 0
    if not g.args or g.opts.get("help"):
        sys.stdout.write(_usage())
        return 0 if g.opts.get("help") else 2
    root = os.path.abspath(str(g.opts.get("root") or DEFAULT_ROOT))
    command, rest = g.args[0], g.args[1:]
    if command == "help":
        sys.stdout.write(_usage(rest[0] if rest and rest[0] in COMMANDS else None))
        return 0
    if command not in COMMANDS:
        raise UsageError(f"No such command: {command!r}")
    flags, _ = COMMANDS[command]
    # exec's command and ps's ps(1) options follow the id as they are
    p = parse_flags(rest, flags, stop_after=1 if command in ("exec", "ps") else None)
    if p.opts.get("help"):
        sys.stdout.write(_usage(command))
        return 0
    store = StateStore(root)
    return _run_command(command, p, store, root)


def _run_command(command: str, p: Parsed, store: StateStore, root: str) -> int:
    o = p.opts
    if command == "state":
        doc = store.load(_one_id(p, command)).to_oci()
        sys.stdout.write(jsonio.dumps(doc, indent=2) + "\n")
        return 0
    if command == "start":
        from . import ops

        ops.start(store, _one_id(p, command))
        return 0
    if command == "kill":
        from . import ops

        cid = _one_id(p, command, extra=1)
        sig = ops.parse_signal(p.args[1] if len(p.args) > 1 else "SIGTERM")
        ops.kill(store, cid, sig, bool(o.get("all")))
        return 0
    if command == "delete":
        from . import ops

        ops.delete(store, _one_id(p, command), bool(o.get("force")))
        return 0
    if command in ("pause", "resume"):
        from . import ops

        getattr(ops, command)(store, _one_id(p, command))
        return 0
    if command == "ps":
        return _ps(store, p)
    if command == "list":
        return _list(store, p)
    if command == "update":
        return _update(store, p)
    if command == "events":
        from . import events

        try:
            interval = events.parse_interval(str(o.get("interval", "5s")))
        except ValueError:
            raise UsageError(f"--interval: not a duration: {o.get('interval')!r}") from None
        return events.run(store, _one_id(p, command), bool(o.get("stats")), interval)
    if command == "create":
        _warm_attach_lock()
        from . import lifecycle

        cid = _one_id(p, command)
        _note_accepted(o)
        lifecycle.create(os.path.abspath(str(o.get("bundle") or os.getcwd())), cid, root,
                         pid_file=o.get("pid_file"),  # type: ignore[arg-type]
                         console_socket=o.get("console_socket"),  # type: ignore[arg-type]
                         preserve_fds=_int_option(o, "preserve_fds", "--preserve-fds"),
                         new_keyring=not o.get("no_new_keyring"))
        return 0
    if command == "run":
        return _run(p, root)
    if command == "exec":
        return _exec(store, p)
    if command == "features":
        from .features import features

        sys.stdout.write(jsonio.dumps(features(), indent=2) + "\n")
        return 0
    if command == "spec":
        from .features import write_default_spec

        write_default_spec(str(o.get("bundle") or "."), bool(o.get("rootless")))
        return 0
    if command == "check":
        return _check(str(o.get("format") or "table"))
    if command == "filters":
        from .seccomp import show

        sys.stdout.write(show.render(os.path.abspath(str(o.get("bundle") or os.getcwd()))))
        return 0
    raise UsageError(f"No such command: {command!r}")  # pragma: no cover - COMMANDS covers it


def _note_accepted(o: dict[str, object]) -> None:
    # accepted for runc compatibility: the root is always entered with pivot_root (MS_MOVE is
    # never needed for our mounts); --no-new-keyring is passed on to create and run
    if o.get("no_pivot"):
        log.debug("--no-pivot: pivot_root is used regardless")


def derive_id(bundle: str) -> str:
    """The id of a `run BUNDLE_DIR` container: the directory's name plus a random suffix, so the
    same bundle can run several times at once."""
    import secrets

    name = "".join(c if c.isalnum() or c in "_+-." else "-" for c in os.path.basename(bundle))
    return f"{name.strip('.') or 'container'}-{secrets.token_hex(4)}"


def is_bundle_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def _warm_attach_lock() -> None:
    """The command will move a process into a cgroup: start the kernel's wait for that now,
    before the imports it would otherwise follow (container.attach_lock)."""
    from .container import attach_lock

    attach_lock.warm()


def _run(p: Parsed, root: str) -> int:
    _warm_attach_lock()
    from . import lifecycle

    o = p.opts
    if not p.args:
        raise UsageError(f"run: the container id is missing\n{_usage('run').strip()}")
    target = _one_id(p, "run")
    bundle = o.get("bundle")
    # the short form: a directory, unless the current directory is the bundle (runc's form)
    if bundle is None and (is_bundle_dir(target) or (
            os.path.isdir(target) and not is_bundle_dir(os.getcwd()))):
        bundle, container_id = target, derive_id(os.path.abspath(target))
    else:
        container_id = target
        bundle = bundle or os.getcwd()
    _note_accepted(o)
    pid_file = o.get("pid_file")
    if o.get("detach"):
        lifecycle.create(os.path.abspath(str(bundle)), container_id, root,
                         pid_file=pid_file,  # type: ignore[arg-type]
                         console_socket=o.get("console_socket"),  # type: ignore[arg-type]
                         preserve_fds=_int_option(o, "preserve_fds", "--preserve-fds"),
                         new_keyring=not o.get("no_new_keyring"))
        from . import ops

        store = StateStore(root)
        try:
            ops.start(store, container_id)
        except BaseException:
            # as runc: a container `run -d` could not start is destroyed (the runtime-spec
            # goes on to its deletion and poststop), not left stopped for a delete nobody
            # will call, as the foreground run cleans up too
            _delete_after_failed_start(store, container_id, pid_file)  # type: ignore[arg-type]
            raise
        return 0
    if o.get("console_socket"):
        raise UsageError("run: --console-socket needs --detach (without it the terminal is "
                         "wired to the caller)")
    return lifecycle.run(os.path.abspath(str(bundle)), container_id, root,
                         pid_file,  # type: ignore[arg-type]
                         new_keyring=not o.get("no_new_keyring"))


def _delete_after_failed_start(store: StateStore, container_id: str,
                               pid_file: str | None) -> None:
    from . import ops

    try:
        ops.delete(store, container_id, force=True)
        if pid_file:
            os.unlink(pid_file)  # create wrote it: it names the init just killed
    except FileNotFoundError:
        pass
    except (SecfiltError, OSError) as e:  # the start's error is the one to report
        log.warning(f"{container_id}: cannot delete the container that did not start: {e}")


def _exec(store: StateStore, p: Parsed) -> int:
    _warm_attach_lock()
    from .execproc import ExecOptions, exec_process

    o = p.opts
    if not p.args:
        raise UsageError(f"exec: the container id is missing\n{_usage('exec').strip()}")
    for flag, key in (("--apparmor", "apparmor"), ("--process-label", "process_label")):
        if o.get(key):
            raise ConfigError(f"{flag}: security labels are not applied by secfilt-runtime")
    gids = []
    for g in o.get("additional_gids", []):  # type: ignore[union-attr]
        try:
            gids.append(int(g))
        except ValueError:
            raise UsageError(f"--additional-gids: not a number: {g!r}") from None
    opts = ExecOptions(
        args=tuple(p.args[1:]), process_file=o.get("process"),  # type: ignore[arg-type]
        tty=bool(o.get("tty")), cwd=o.get("cwd"),  # type: ignore[arg-type]
        env=tuple(o.get("env", [])), user=o.get("user"),  # type: ignore[arg-type]
        additional_gids=tuple(gids), no_new_privs=bool(o.get("no_new_privs")),
        cap_add=tuple(o.get("cap", [])),  # type: ignore[arg-type]
    )
    return exec_process(store, p.args[0], opts, detach=bool(o.get("detach")),
                        pid_file=o.get("pid_file"),  # type: ignore[arg-type]
                        console_socket=o.get("console_socket"),  # type: ignore[arg-type]
                        preserve_fds=_int_option(o, "preserve_fds", "--preserve-fds"))


def _format(p: Parsed) -> str:
    fmt = str(p.opts.get("format", "table"))
    if fmt not in ("table", "json"):
        raise UsageError(f"--format: {fmt!r} is not one of table, json")
    return fmt


def _ps(store: StateStore, p: Parsed) -> int:
    from . import ops

    fmt = _format(p)
    if not p.args:
        raise UsageError(f"ps: the container id is missing\n{_usage('ps').strip()}")
    pids = ops.pids(store, p.args[0])
    if fmt == "json":
        sys.stdout.write(jsonio.dumps(pids) + "\n")
        return 0
    # as runc: ps(1) on the host with the given options (-ef by default), its header and the
    # lines of the container's processes
    import subprocess

    ps_args = p.args[1:] or ["-ef"]
    try:
        out = subprocess.run(["ps", *ps_args], capture_output=True, text=True)
    except OSError as e:
        raise SecfiltError(f"ps: cannot run ps: {e.strerror}") from None
    if out.returncode != 0:
        raise SecfiltError(f"ps {' '.join(ps_args)}: exit status {out.returncode}: "
                           f"{(out.stdout + out.stderr).strip()}")
    lines = out.stdout.splitlines()
    header = lines[0].split() if lines else []
    if "PID" not in header:
        raise SecfiltError("ps: the output of ps has no PID column")
    column = header.index("PID")
    end = 0
    for name in header[:column + 1]:
        end = lines[0].index(name, end) + len(name)
    wanted = set(pids)
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        if _ps_pid(line, column, end) in wanted:
            sys.stdout.write(line + "\n")
    return 0


def _ps_pid(line: str, column: int, end: int) -> int | None:
    """A ps(1) line's pid: the number ps right-aligns under the header's PID (`end`), where a
    command name with spaces in an earlier column (-o comm,pid) does not move it; by the
    column's index only where an earlier column outgrew its width."""
    fields = line[:end].split()
    if len(line) >= end and line[end:end + 1].strip() == "" and fields and fields[-1].isdigit():
        return int(fields[-1])
    fields = line.split()
    return int(fields[column]) if len(fields) > column and fields[column].isdigit() else None


def _list(store: StateStore, p: Parsed) -> int:
    from . import ops

    fmt = _format(p)
    states = ops.list_states(store)
    if p.opts.get("quiet"):
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif fmt == "json":
        sys.stdout.write(jsonio.dumps(states) + "\n")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s.get("pid", 0)), s["status"], s["bundle"], s["created"],
                  s["owner"]) for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                             .rstrip() + "\n")
    return 0


RESOURCES_MAX_BYTES = 1 << 20  # a linux.resources object is a few hundred bytes


def _read_resources(src: str) -> bytes:
    if src == "-":
        return jsonio.read_bounded(sys.stdin.buffer, RESOURCES_MAX_BYTES)  # type: ignore[return-value]
    with open(src, "rb") as f:
        return jsonio.read_bounded(f, RESOURCES_MAX_BYTES)  # type: ignore[return-value]


def _update(store: StateStore, p: Parsed) -> int:
    from . import ops

    o = p.opts
    cid = _one_id(p, "update")
    resources: dict = {}
    if "resources" in o:
        src = str(o["resources"])
        try:
            resources = jsonio.loads(_read_resources(src))
        except OSError as e:
            # too large: the file was read, and is refused
            why = e.strerror if e.errno == errno.EFBIG else f"cannot read: {e.strerror}"
            raise UsageError(f"--resources {src}: {why}") from None
        except jsonio.JSONDecodeError as e:
            raise UsageError(f"--resources {src}: invalid JSON: {e}") from None
        if not isinstance(resources, dict):
            raise UsageError(f"--resources {src}: must be a JSON object (linux.resources)")
    for key, flag, section, name in (("pids_limit", "--pids-limit", "pids", "limit"),
                                     ("memory", "--memory", "memory", "limit"),
                                     ("cpu_shares", "--cpu-shares", "cpu", "shares"),
                                     ("cpu_quota", "--cpu-quota", "cpu", "quota"),
                                     ("cpu_period", "--cpu-period", "cpu", "period")):
        if key in o:
            resources.setdefault(section, {})[name] = _int_option(o, key, flag, minimum=-1)
    ops.update(store, cid, resources)
    return 0


def main(argv: list[str] | None = None) -> None:
    try:
        code = dispatch(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        log.fatal(str(e))
        code = 2
    except SecfiltError as e:
        log.fatal(str(e))
        code = 1
    except OSError as e:  # the state directory or the log could not be written
        log.fatal(f"{e.filename or 'I/O'}: {e.strerror or e}")
        code = 1
    except KeyboardInterrupt:
        code = 128 + 2
    leave(code)


def leave(code: int) -> None:
    """Exit without the interpreter's teardown, which frees every module one by one: ~30 ms
    of a `run` here, a third of `state`'s own work. Nothing of ours needs it: containers,
    cgroups and state are settled before this point, the log is written unbuffered, and our
    threads are daemons. Should stdout not flush (a closed pipe) or a non-daemon thread live,
    the ordinary exit reports and waits as it always did."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    threading = sys.modules.get("threading")
    if threading is not None and any(not t.daemon for t in threading.enumerate()
                                     if t is not threading.main_thread()):
        sys.exit(code)
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or coverage run writes its report at exit
    os._exit(code)


def _check(fmt: str) -> int:
    """Which layer enforces each policy rule on this machine (its Landlock ABI)."""
    from .policy import cgroup_net, landlock, layers, mounts

    abi = landlock.abi()
    cgroup_bpf = cgroup_net.own_cgroup2_dir() is not None and cgroup_net.available()
    # secfilt's read-only mounts, set up for real in a throw-away child (as nobody too, for root)
    secfilt_mounts = mounts.available()
    rows = layers.enforcement_layers(abi, cgroup_bpf, secfilt_mounts.caller)
    if fmt == "json":
        doc = {"landlockABI": abi, "cgroupBPF": cgroup_bpf,
               "secfiltMounts": {"caller": secfilt_mounts.caller,
                                 "otherUsers": secfilt_mounts.other_users},
               "rules": [r.to_dict() for r in rows]}
        sys.stdout.write(jsonio.dumps(doc, indent=2) + "\n")
    elif fmt == "table":
        sys.stdout.write(f"Landlock ABI: {abi or 'none'}; cgroup BPF: "
                         f"{'yes' if cgroup_bpf else 'no'}; secfilt's read-only mounts: "
                         f"{secfilt_mounts.caller or 'none'} (other users: "
                         f"{secfilt_mounts.other_users or 'none'})\n"
                         f"{layers.format_table(rows)}\n")
    else:
        raise UsageError(f"--format: {fmt!r} is not table or json")
    return 0


if __name__ == "__main__":
    main()
