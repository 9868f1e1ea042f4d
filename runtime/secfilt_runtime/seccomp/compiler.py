"""Profile -> classic BPF, with libseccomp (pyseccomp). The only module that imports it, and
only the cold path (a cache miss, `filters`) imports this module.

Semantics follow runc (libcontainer/seccomp): a rule whose action equals the default action is
skipped; a syscall name libseccomp does not know is skipped (profiles are written for many
kernels); several conditions on the same argument index become one rule per condition (an AND
of them could never match); the native architecture is always in the filter.
"""

from __future__ import annotations

import os

import pyseccomp

from ..errors import ConfigError
from ..records import record
from . import enosys
from .profile import AUDIT_ARCH, NATIVE_ARCH, Action, Profile, condition_groups

# bump when the way programs are built changes: the cache key includes it
COMPILER_VERSION = 1

_OPS = {"SCMP_CMP_NE": pyseccomp.NE, "SCMP_CMP_LT": pyseccomp.LT, "SCMP_CMP_LE": pyseccomp.LE,
        "SCMP_CMP_EQ": pyseccomp.EQ, "SCMP_CMP_GE": pyseccomp.GE, "SCMP_CMP_GT": pyseccomp.GT,
        "SCMP_CMP_MASKED_EQ": pyseccomp.MASKED_EQ}
_NR_SCMP_ERROR = -1


@record(frozen=True)
class Compiled:
    bpf: bytes
    skipped: tuple[str, ...]  # syscall names libseccomp does not know, left out
    pfc: str = ""             # libseccomp's readable form, when asked for
    # runc's ENOSYS stub in front of the program: architecture -> last syscall it names
    enosys_after: tuple[tuple[str, int], ...] = ()


def libseccomp_version() -> str:
    from .. import kernel

    return kernel.libseccomp_version()


def action_value(action: Action) -> int:
    """The SECCOMP_RET_* value of an action (SCMP_ACT_KILL is KILL_THREAD, as in runc)."""
    name = action.name
    if name == "SCMP_ACT_ERRNO":
        return pyseccomp.ERRNO(action.errno if action.errno is not None else 1)  # EPERM
    if name == "SCMP_ACT_TRACE":
        return pyseccomp.TRACE(action.data)
    return {"SCMP_ACT_KILL": pyseccomp.KILL_THREAD, "SCMP_ACT_KILL_THREAD": pyseccomp.KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": pyseccomp.KILL_PROCESS, "SCMP_ACT_TRAP": pyseccomp.TRAP,
            "SCMP_ACT_ALLOW": pyseccomp.ALLOW, "SCMP_ACT_LOG": pyseccomp.LOG,
            "SCMP_ACT_NOTIFY": pyseccomp.NOTIFY}[name]


def compile_profile(profile: Profile, *, field: str = "linux.seccomp",
                    bad_arch_kill_process: bool = False, with_pfc: bool = False,
                    enosys_stub: bool = False, enosys_beyond_libseccomp: bool = False
                    ) -> Compiled:
    """Compile for the native architecture plus profile.architectures. Raises ConfigError
    naming the field for what libseccomp refuses. enosys_stub: prepend runc's ENOSYS stub
    (see enosys.py) where runc would. enosys_beyond_libseccomp: answer ENOSYS for every
    syscall number above the last one libseccomp knows, on every architecture of the filter
    (for the policy: a rule libseccomp could not compile must not become an allowed call)."""
    default = action_value(profile.default_action)
    try:
        filt = pyseccomp.SyscallFilter(default)
    except OSError as e:
        raise ConfigError(f"{field}.defaultAction: libseccomp refuses "
                          f"{profile.default_action.name}: {e.strerror}") from None
    filt.set_attr(pyseccomp.Attr.CTL_NNP, 0)  # no_new_privs is the runtime's business
    if bad_arch_kill_process:
        filt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    native = NATIVE_ARCH.get(os.uname().machine)
    for i, name in enumerate(profile.architectures):
        if name == native:
            continue
        try:
            if not filt.exist_arch(AUDIT_ARCH[name]):
                filt.add_arch(AUDIT_ARCH[name])
        except OSError as e:
            raise ConfigError(f"{field}.architectures[{i}]: {name} is not supported by "
                              f"libseccomp {libseccomp_version()}: {e.strerror}") from None
    skipped: list[str] = []
    for i, rule in enumerate(profile.rules):
        act = action_value(rule.action)
        if act == default:
            continue
        for name in rule.names:
            nr = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
            if nr == _NR_SCMP_ERROR:
                if name not in skipped:
                    skipped.append(name)
                continue
            for group in condition_groups(rule.args):
                conds = [pyseccomp.Arg(a.index, _OPS[a.op], a.value, a.value_two)
                         for a in group]
                try:
                    filt.add_rule(act, nr, *conds)
                except OSError as e:
                    raise ConfigError(f"{field}.syscalls[{i}]: libseccomp refuses the rule "
                                      f"for {name}: {e.strerror}") from None
    bpf = _export(filt.export_bpf).encode("latin-1")
    last: dict[str, int] = {}
    if enosys_stub and enosys.applies(profile):
        last = enosys.last_syscalls(
            profile, lambda arch, name: pyseccomp.resolve_syscall(AUDIT_ARCH[arch], name))
        bpf = enosys.stub(last) + bpf
    elif enosys_beyond_libseccomp:
        archs = dict.fromkeys((native, *profile.architectures) if native else
                              profile.architectures)
        last = {a: last_known_syscall(a) for a in archs if a != "SCMP_ARCH_X32"}
        bpf = enosys.stub(last) + bpf
    return Compiled(bpf=bpf, skipped=tuple(skipped),
                    pfc=_export(filt.export_pfc) if with_pfc else "",
                    enosys_after=tuple(last.items()))


def last_known_syscall(arch: str) -> int:
    """The largest syscall number libseccomp can name on `arch`."""
    last = 0
    for nr in range(4096):
        try:
            pyseccomp.resolve_syscall(AUDIT_ARCH[arch], nr)
        except ValueError:
            continue
        last = nr
    return last


def _export(method) -> str:  # noqa: ANN001 - a bound export_* method of SyscallFilter
    fd = os.memfd_create("seccomp-export", os.MFD_CLOEXEC)
    try:
        with os.fdopen(fd, "w+b", closefd=False) as f:
            method(f)
            f.seek(0)
            return f.read().decode("latin-1")
    finally:
        os.close(fd)
