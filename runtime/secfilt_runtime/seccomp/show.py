"""`secfilt-runtime filters`: the seccomp filters a bundle would get, in libseccomp's readable
pseudo filter code (PFC), without running anything. Compiled the same way as for a start, so
what is shown is what is enforced."""

from __future__ import annotations

from .. import spec as spec_mod
from ..schema import SECFILTER_PREFIX
from . import OCI_SOURCE, POLICY_SOURCE, loader, policy_profile
from .profile import NOTIFY, Profile, parse


def _section(title: str, profile: Profile, flags: int, pfc: str, skipped: tuple[str, ...],
             notes: list[str]) -> str:
    lines = [f"# ==== {title} ====",
             f"# default action: {profile.default_action.name}"
             + (f" (errno {profile.default_action.errno})"
                if profile.default_action.errno is not None else ""),
             f"# seccomp(2) flags: {flags:#x}"]
    lines += [f"# {n}" for n in notes]
    if skipped:
        lines.append(f"# skipped (unknown to libseccomp): {', '.join(skipped)}")
    return "\n".join(lines) + "\n" + pfc


def render(bundle_dir: str) -> str:
    """Both filters of a bundle (linux.seccomp, and the policy's when org.secfilter.*
    annotations are set), in install order, as PFC text."""
    from . import compiler

    spec = spec_mod.load_bundle(bundle_dir)
    out: list[str] = []
    if any(k.startswith(SECFILTER_PREFIX) for k in spec.annotations):
        from ..policy import parse as policy_parse

        policy = policy_parse.from_annotations(spec.annotations, spec.root.path,
                                           mounts=spec.mounts)
        pol = policy_profile(policy)
        if pol is not None:
            c = compiler.compile_profile(pol, field="policy filter", bad_arch_kill_process=True,
                                         with_pfc=True, enosys_beyond_libseccomp=True)
            notes = ["TRACE: judged by the tracer; without one the call fails with ENOSYS"]
            notes += [f"before this program: syscalls above {nr} on {arch} (unknown to "
                      "libseccomp) return ENOSYS" for arch, nr in c.enosys_after]
            out.append(_section(f"{POLICY_SOURCE}", pol,
                                loader.program_flags(pol.flags, False), c.pfc, c.skipped,
                                notes))
    if spec.linux.seccomp is not None:
        profile = parse(spec.linux.seccomp)
        listener = any(r.action.name == NOTIFY for r in profile.rules)
        c = compiler.compile_profile(profile, with_pfc=True, enosys_stub=True)
        notes = [f"before this program (as runc): syscalls above {nr} on {arch} return ENOSYS"
                 for arch, nr in c.enosys_after]
        if profile.listener_path:
            notes.append(f"listener: {profile.listener_path}")
        out.append(_section(f"{OCI_SOURCE}", profile,
                            loader.program_flags(profile.flags, listener), c.pfc, c.skipped,
                            notes))
    if not out:
        return "# no seccomp filter: the bundle has no linux.seccomp and no secfilter policy\n"
    return "\n".join(out)
