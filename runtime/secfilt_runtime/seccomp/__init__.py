"""The container's seccomp filters: linux.seccomp and the secfilter policy's own filter.

`prepare` runs in the runtime before it forks: it parses, checks, and compiles the programs (or
loads them from the cache) so that a bad profile is refused before anything starts, and the
container init only has bytes to hand to seccomp(2). `install` runs in the init as the very last
thing before execve.

Install order: the policy's program first, linux.seccomp's last. Every filter sees every
syscall and the most severe action wins, so the order changes no decision; loading the OCI
profile last means a profile that denies seccomp(2) itself still gets both programs in. The
exception is a profile with NOTIFY rules: the policy's filter forbids creating a listener (a
listener of the container's own would outrank the tracer), so that profile goes first and must
allow seccomp(2) for the policy's program to follow.
"""

from __future__ import annotations

import os

from .. import kernel
from ..errors import ConfigError, ContainerError
from ..log import log
from ..records import field, record
from .profile import (
    AUDIT_ARCH,
    FLAG_NEW_LISTENER,
    NATIVE_ARCH,
    NOTIFY,
    Profile,
    parse,
    to_json,
    without_tracer,
)

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..policy.model import Policy
    from . import cache
    from .notify import Handoff

OCI_SOURCE = "linux.seccomp"
POLICY_SOURCE = "policy"
# the policy's filter covers the i386 entry too (int 0x80); libseccomp keeps x32 out by itself
POLICY_ARCHITECTURES = ("SCMP_ARCH_X86",)
_CAP_SYS_ADMIN = 21


@record(frozen=True)
class Program:
    source: str  # OCI_SOURCE or POLICY_SOURCE
    bpf: bytes
    flags: int   # SECCOMP_FILTER_FLAG_* for seccomp(2)

    @property
    def has_listener(self) -> bool:
        return bool(self.flags & FLAG_NEW_LISTENER)


@record
class Filters:
    programs: tuple[Program, ...] = ()  # in install order
    listener_path: str | None = None
    listener_metadata: str | None = None
    skipped: tuple[str, ...] = ()  # syscall names of the profile this libseccomp does not know
    # the page the init hands the listener over in; mapped by prepare, before the fork
    handoff: Handoff | None = field(default=None, compare=False, repr=False)
    # the policy the programs were built for: the init also enforces it with Landlock and
    # read-only mounts
    policy: Policy | None = field(default=None, compare=False)

    @property
    def needs_listener(self) -> bool:
        return any(p.has_listener for p in self.programs)


def policy_profile(policy: Policy | None, supervised: bool = False) -> Profile | None:
    if policy is None:
        return None
    from ..policy import filter as policy_filter

    built = policy_filter.build(policy, supervised)
    archs = tuple(dict.fromkeys(built.architectures + POLICY_ARCHITECTURES))
    return Profile(default_action=built.default_action, rules=built.rules, architectures=archs,
                   flags=built.flags)


def programs_from(compiled: list[tuple[str, bytes, int]]) -> tuple[Program, ...]:
    return tuple(Program(source=s, bpf=b, flags=f) for s, b, f in compiled)


def prepare(spec_seccomp: dict[str, Any] | None, policy: Policy | None, *,
            cache_dir: str | None, supervised: bool = False) -> Filters:
    """Compile, or load from cache_dir, the BPF programs. Raises ConfigError before anything
    starts for anything the profile asks that cannot be enforced. `supervised`: the policy's
    destination calls go to a listener (policy.filter.build), handed over like NOTIFY's."""
    profile = parse(spec_seccomp) if spec_seccomp is not None else None
    pol = policy_profile(policy, supervised)
    if profile is not None and pol is not None:
        profile = without_tracer(profile)
    if profile is None and pol is None:
        return Filters()
    # here, not at the top: a container without filters needs none of them (install, in the
    # init, needs only the kernel)
    from . import loader

    listener = _has_notify(profile)
    if profile is not None:
        loader.check_supported(profile.flags)
    if pol is not None and pol.flags:
        loader.check_supported(pol.flags, field="the policy filter's flags")
    entry = _compile_cached(profile, pol, listener, cache_dir)
    refuse_if_exec_denied([bpf for _, bpf, _ in entry.programs])
    for name in entry.skipped:
        log.debug(f"linux.seccomp: syscall {name} is unknown to libseccomp; rule skipped")
    return Filters(
        programs=programs_from(list(entry.programs)),
        listener_path=profile.listener_path if profile else None,
        listener_metadata=profile.listener_metadata if profile else None,
        skipped=entry.skipped,
        handoff=_handoff() if listener or _has_notify(pol) else None,
        policy=policy,
    )


def _handoff() -> Handoff:
    from .notify import Handoff  # only for filters with a listener

    return Handoff()


def _has_notify(profile: Profile | None) -> bool:
    return profile is not None and any(r.action.name == NOTIFY for r in profile.rules)


_EXECVE = {"x86_64": 59, "aarch64": 221}


def refuse_if_exec_denied(programs: list[bytes]) -> None:
    """A filter that denies execve would leave the init unable to run the process, or even to
    report why (its report is a syscall the filter may deny too): refuse it up front. Judged
    for two unrelated argument vectors, so a rule about execve's arguments is not mistaken for
    a denial of every execve."""
    from . import bpf

    machine = os.uname().machine
    native = NATIVE_ARCH.get(machine)
    if native is None or machine not in _EXECVE:
        return
    answers = {bpf.decide(programs, bpf.seccomp_data(_EXECVE[machine], AUDIT_ARCH[native], args))
               for args in ((0,) * 6, (0x7FFD_0000_1000, 0x7FFD_0000_2000, 0x7FFD_0000_3000,
                                       1, 2, 3))}
    if all(bpf.action(a) in bpf.DENYING for a in answers):
        raise ConfigError("linux.seccomp: the filters deny execve (SECCOMP_RET "
                          f"{max(answers):#x}): the container process could never be started")


def _compile_cached(profile: Profile | None, pol: Profile | None, listener: bool,
                    cache_dir: str | None) -> cache.Entry:
    from . import cache

    try:
        version = kernel.libseccomp_version()
    except OSError as e:
        raise ConfigError(f"linux.seccomp: libseccomp is needed to compile the filters and "
                          f"cannot be loaded: {e}") from None
    key = cache.key(profile=to_json(profile) if profile else None,
                    policy_profile=to_json(pol) if pol else None,
                    machine=os.uname().machine, libseccomp=version)
    if cache_dir is not None:
        entry = cache.load(cache_dir, key)
        if entry is not None:
            return entry
    entry = compile_entry(profile, pol, listener)
    if cache_dir is not None:
        cache.store(cache_dir, key, entry)
    return entry


def compile_entry(profile: Profile | None, pol: Profile | None, listener: bool) -> cache.Entry:
    from . import cache, loader

    try:
        from . import compiler  # libseccomp only on a cache miss
    except (ImportError, OSError, RuntimeError) as e:  # pyseccomp: "Unable to find libseccomp"
        raise ConfigError(f"linux.seccomp: libseccomp is needed to compile the filters and "
                          f"pyseccomp cannot load it: {e}") from None

    programs: list[tuple[str, bytes, int]] = []
    skipped: tuple[str, ...] = ()
    if pol is not None:
        c = compiler.compile_profile(pol, field="policy filter", bad_arch_kill_process=True,
                                     enosys_beyond_libseccomp=True)
        programs.append((POLICY_SOURCE, c.bpf, loader.program_flags(pol.flags,
                                                                      _has_notify(pol))))
    if profile is not None:
        c = compiler.compile_profile(profile, enosys_stub=True)
        oci = (OCI_SOURCE, c.bpf, loader.program_flags(profile.flags, listener))
        # the policy's filter forbids creating a listener: a NOTIFY profile goes in first
        programs.insert(0, oci) if listener else programs.append(oci)
        skipped = c.skipped
    return cache.Entry(programs=tuple(programs), skipped=skipped)


def _able_to_load() -> None:
    """Without no_new_privs the kernel wants CAP_SYS_ADMIN in the effective set. The init kept
    it in the effective and permitted sets only (see process.apply_identity), so execve drops
    it by its own rules; raise it back into the effective set if a uid change cleared it."""
    if kernel.prctl(kernel.PR_GET_NO_NEW_PRIVS) == 1:
        return
    effective, permitted, inheritable = kernel.capget()
    bit = 1 << _CAP_SYS_ADMIN
    if effective & bit:
        return
    if not permitted & bit:
        raise ContainerError("linux.seccomp: process.noNewPrivileges is false and "
                             "CAP_SYS_ADMIN is gone: the filters cannot be loaded")
    kernel.capset(effective | bit, permitted, inheritable)


def install(filters: Filters) -> int | None:
    """Load the programs; the last thing before execve. Returns the notify listener fd, which
    the runtime has taken by then (see notify.Handoff); it closes at execve."""
    if not filters.programs:
        return None
    _able_to_load()
    ready = [(p, kernel.BpfProgram(p.bpf)) for p in filters.programs]  # allocate before loading
    listener = None
    for program, loadable in ready:
        try:
            fd = kernel.seccomp_load(loadable, program.flags)
        except OSError as e:
            raise ContainerError(f"{program.source}: cannot load the seccomp filter: "
                                 f"{os.strerror(e.errno or 0)}") from None
        if program.has_listener:
            listener = fd
    handoff = filters.handoff
    if listener is not None and handoff is not None and not handoff.publish_and_wait(listener):
        os._exit(1)  # the runtime is gone; nothing may run unwatched
    return listener


def hand_listener_to_agent(filters: Filters, pid: int, state: dict[str, Any],
                           watch_fd: int) -> None:
    """In the runtime, after "start", for filters that need a listener."""
    hand_over(filters.handoff, filters.listener_path, filters.listener_metadata, pid, state,
              watch_fd)


def hand_over(handoff: Handoff | None, listener_path: str | None, metadata: str | None,
              pid: int, state: dict[str, Any], watch_fd: int) -> None:
    """Take the listener from the process through `handoff` and give it to the agent at
    `listener_path` (run and exec hold the page; `start` receives it from the init)."""
    from .notify import hand_to_agent

    if handoff is None or not listener_path:
        raise ConfigError("linux.seccomp.listenerPath: required when a rule uses "
                          "SCMP_ACT_NOTIFY")
    hand_to_agent(handoff, listener_path, metadata, pid, state, watch_fd)
