"""The runc-compatible command line: parse flags, call lifecycle, turn errors into exit codes."""

from __future__ import annotations

import os
import secrets
import sys
from typing import Annotated

import typer

from .errors import SecfiltError
from .log import log
from .state import DEFAULT_ROOT

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="secfilt-runtime: an OCI runtime with a seccomp-BPF and ptrace policy sandbox.",
)


class Globals:
    root: str = DEFAULT_ROOT


@app.callback()
def main_options(
    root: Annotated[str, typer.Option(help="directory of the containers' state")] = DEFAULT_ROOT,
    log_path: Annotated[
        str | None, typer.Option("--log", help="log file (default: stderr)")
    ] = None,
    log_format: Annotated[str, typer.Option(help="text or json")] = "text",
    debug: Annotated[bool, typer.Option(help="log debug messages")] = False,
    systemd_cgroup: Annotated[
        bool, typer.Option(help="accepted for runc compatibility; cgroupfs is used")
    ] = False,
) -> None:
    try:
        log.configure(log_path, log_format, debug)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    Globals.root = os.path.abspath(root)


def derive_id(bundle: str) -> str:
    """The id of a `run BUNDLE_DIR` container: the directory's name plus a random suffix, so the
    same bundle can run several times at once."""
    name = "".join(c if c.isalnum() or c in "_+-." else "-" for c in os.path.basename(bundle))
    return f"{name.strip('.') or 'container'}-{secrets.token_hex(4)}"


def is_bundle_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


@app.command()
def run(
    target: Annotated[
        str, typer.Argument(metavar="ID|BUNDLE_DIR", help="container id, or a bundle directory")
    ],
    bundle: Annotated[
        str | None, typer.Option("--bundle", "-b", help="bundle directory (default: cwd)")
    ] = None,
    pid_file: Annotated[
        str | None, typer.Option(help="write the init's pid to this file")
    ] = None,
) -> None:
    """Create and start a container, and wait for it to exit; exits with its status."""
    from . import lifecycle

    # the short form: a directory, unless the current directory is the bundle (runc's form)
    if bundle is None and (is_bundle_dir(target) or (
            os.path.isdir(target) and not is_bundle_dir(os.getcwd()))):
        bundle, container_id = target, derive_id(os.path.abspath(target))
    else:
        container_id = target
        bundle = bundle or os.getcwd()
    code = lifecycle.run(os.path.abspath(bundle), container_id, Globals.root, pid_file)
    raise typer.Exit(code)


def main() -> None:
    # click's standalone mode reports usage errors and exits with the command's status
    try:
        app()
    except SecfiltError as e:
        log.fatal(str(e))
        sys.exit(1)
    except OSError as e:  # the state directory or the log could not be written
        log.fatal(f"{e.filename or 'I/O'}: {e.strerror or e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(128 + 2)


if __name__ == "__main__":
    main()
