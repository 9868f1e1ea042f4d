"""Unit tests of linux.seccomp parsing, compilation and the cache (no containers)."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from secfilt_runtime.errors import ConfigError
from secfilt_runtime.seccomp import bpf, cache, compiler, enosys, loader, notify, prepare
from secfilt_runtime.seccomp.profile import (
    AUDIT_ARCH,
    FLAG_NEW_LISTENER,
    Action,
    ArgCondition,
    parse,
)

from conftest import REPO

PODMAN = REPO / "tests" / "data" / "reference" / "real-configs" / "podman-4.3-run.json"


def podman_section() -> dict:
    return json.loads(PODMAN.read_text())["linux"]["seccomp"]


def test_parse_actions_errno_and_trace_data():
    p = parse({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["kill"], "action": "SCMP_ACT_TRACE"},
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "errnoRet": 5},  # ignored, as runc
    ]})
    assert p.default_action == Action("SCMP_ACT_ERRNO", errno=38)
    assert p.rules[0].action == Action("SCMP_ACT_ERRNO")
    assert p.rules[1].action == Action("SCMP_ACT_ERRNO", errno=13)
    assert p.rules[2].action == Action("SCMP_ACT_TRACE", data=1)  # EPERM, as runc
    assert p.rules[3].action == Action("SCMP_ACT_ALLOW")


@pytest.mark.parametrize(("section", "message"), [
    ({"defaultAction": "SCMP_ACT_BOGUS"},
     'linux.seccomp.defaultAction: unknown seccomp action "SCMP_ACT_BOGUS"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["b"], "action": "SCMP_ACT_NOPE"}]},
     'linux.seccomp.syscalls[1].action: unknown seccomp action "SCMP_ACT_NOPE"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]},
     'linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_Z80"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]},
     'linux.seccomp.flags[0]: unknown seccomp flag "SECCOMP_FILTER_FLAG_FAST"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action":
      "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
     'linux.seccomp.syscalls[0].args[0].op: unknown seccomp operator "SCMP_CMP_ABOUT"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action":
      "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "linux.seccomp.syscalls[0].args[0].index: 6 is out of range"),
    ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"},
     "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x", "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]},
     "linux.seccomp.syscalls[0]: SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]},
     "linux.seccomp.listenerPath: required when a rule uses SCMP_ACT_NOTIFY"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000},
     "linux.seccomp.defaultErrnoRet: must be an integer from 0 to 65535"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_LOG"}]},
     "linux.seccomp.syscalls[0].names: must be a non-empty array"),
])
def test_parse_refuses_with_the_field(section, message):
    with pytest.raises(ConfigError) as e:
        parse(section)
    assert message in str(e.value)


def test_several_conditions_on_one_index_become_separate_rules():
    a = ArgCondition(1, 0o700, "SCMP_CMP_EQ")
    b = ArgCondition(1, 0o711, "SCMP_CMP_EQ")
    c = ArgCondition(0, 5, "SCMP_CMP_GT")
    assert compiler.condition_groups((a, b)) == [(a,), (b,)]
    assert compiler.condition_groups((a, c)) == [(a, c)]
    assert compiler.condition_groups(()) == [()]


def test_rules_equal_to_the_default_are_skipped_and_unknown_names_reported():
    base = parse({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]})
    same = parse({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},  # = the default
        {"names": ["no_such_call_42"], "action": "SCMP_ACT_ALLOW"}]})
    a, b = compiler.compile_profile(base), compiler.compile_profile(same)
    assert a.bpf == b.bpf
    assert b.skipped == ("no_such_call_42",)
    # a different errno is not the default: it changes the program
    other = parse({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}]})
    assert compiler.compile_profile(other).bpf != a.bpf


def test_every_action_and_operator_compiles():
    for i, act in enumerate(("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                             "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE",
                             "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY")):
        ops = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
               "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
        op = ops[i % len(ops)]
        p = parse({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/l", "syscalls": [
            {"names": ["chmod"], "action": act,
             "args": [{"index": 1, "value": 0o7, "valueTwo": 0o5, "op": op}]}]})
        pfc = compiler.compile_profile(p, with_pfc=True).pfc
        assert '"chmod"' in pfc, (act, op)


def test_architectures_native_always_and_unsupported_refused():
    p = parse({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})
    pfc = compiler.compile_profile(p, with_pfc=True).pfc
    assert f"$arch == {AUDIT_ARCH['SCMP_ARCH_X86_64']}" in pfc
    assert f"$arch == {AUDIT_ARCH['SCMP_ARCH_X86']}" in pfc
    # libseccomp 2.5 does not know LoongArch: refused, as runc refuses it
    if compiler.libseccomp_version() < "2.6":
        bad = parse({"defaultAction": "SCMP_ACT_ALLOW",
                     "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_LOONGARCH64"]})
        with pytest.raises(ConfigError, match=r"architectures\[1\]: SCMP_ARCH_LOONGARCH64 is "
                                              "not supported by libseccomp"):
            compiler.compile_profile(bad)


def test_podman_profile_compiles_with_nothing_skipped():
    c = compiler.compile_profile(parse(podman_section()))
    assert len(c.bpf) % 8 == 0 and len(c.bpf) > 800
    assert c.skipped == ()


def test_flags():
    assert loader.program_flags(("SECCOMP_FILTER_FLAG_LOG",), False) == 2
    # TSYNC with a listener needs TSYNC_ESRCH; WAIT_KILLABLE_RECV only with a listener
    assert loader.program_flags(("SECCOMP_FILTER_FLAG_TSYNC",), True) == 1 | 8 | 16
    assert loader.program_flags(("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",), False) == 0
    assert loader.program_flags(("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",), True) == 32 | 8
    loader.check_supported(("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                            "SECCOMP_FILTER_FLAG_SPEC_ALLOW"))


def test_prepare_listener_and_programs():
    f = prepare({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                 "listenerMetadata": "m", "syscalls": [
                     {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}, None, cache_dir=None)
    assert f.needs_listener and f.handoff is not None
    assert f.programs[-1].flags & FLAG_NEW_LISTENER
    assert (f.listener_path, f.listener_metadata) == ("/run/agent.sock", "m")
    assert prepare(None, None, cache_dir=None).programs == ()


def test_agent_message_has_runcs_fields():
    msg = json.loads(notify.agent_message({"id": "c", "status": "creating"}, 42, "meta"))
    assert msg == {"ociVersion": "1.0.2", "fds": ["seccompFd"], "pid": 42, "metadata": "meta",
                   "state": {"id": "c", "status": "creating"}}
    assert "metadata" not in json.loads(notify.agent_message({}, 1, None))


# ---- the cache --------------------------------------------------------------------------------


def _entry() -> cache.Entry:
    return cache.Entry(programs=(("linux.seccomp", b"\x06\x00\x00\x00\x00\x00\xff\x7f", 0),),
                       skipped=("x",))


def test_cache_round_trip_and_tampering_detected():
    data = cache.encode(_entry(), "k1")
    assert cache.decode(data, "k1") == _entry()
    assert cache.decode(data, "k2") is None  # an entry stored under another key
    doc = json.loads(data)
    doc["programs"][0]["bpf"] = "BgAAAAAAAAA="  # ret KILL instead: digest left as it was
    assert cache.decode(json.dumps(doc).encode(), "k1") is None
    assert cache.decode(b"garbage", "k1") is None


def test_cache_ignores_files_others_could_have_written(tmp_path: Path):
    d = tmp_path / "c"
    cache.store(str(d), "k", _entry())
    assert (d.stat().st_mode & 0o777, (d / "k").stat().st_mode & 0o777) == (0o700, 0o600)
    assert cache.load(str(d), "k") == _entry()
    (d / "k").chmod(0o644)
    assert cache.load(str(d), "k") is None
    (d / "k").chmod(0o600)
    d.chmod(0o755)
    assert cache.load(str(d), "k") is None
    d.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(d / "k", 1000, -1)
        assert cache.load(str(d), "k") is None
        os.chown(d / "k", 0, -1)
    (d / "k").unlink()
    (d / "k").symlink_to(tmp_path / "elsewhere")
    cache.store(str(tmp_path / "elsewhere-dir"), "k", _entry())
    assert cache.load(str(d), "k") is None


def test_cache_key_covers_what_shapes_the_program():
    base = {"profile": {"a": 1}, "policy_profile": None, "machine": "x86_64",
            "libseccomp": "2.5.4"}
    k = cache.key(**base)
    for field, other in (("profile", {"a": 2}), ("policy_profile", {"p": 1}),
                         ("machine", "aarch64"), ("libseccomp", "2.6.0")):
        assert cache.key(**{**base, field: other}) != k


def test_tampered_cache_entry_is_recompiled_not_loaded(tmp_path: Path):
    section = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    d = tmp_path / "cache"
    real = prepare(section, None, cache_dir=str(d))
    (entry_file,) = d.iterdir()
    doc = json.loads(entry_file.read_bytes())
    allow_all = struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000)  # ret ALLOW

    doc["programs"][0]["bpf"] = base64.b64encode(allow_all).decode()
    entry_file.write_bytes(json.dumps(doc).encode())
    again = prepare(section, None, cache_dir=str(d))
    assert again.programs == real.programs


WARM = """
import sys, json
from secfilt_runtime import seccomp
f = seccomp.prepare(json.loads(sys.argv[1]), None, cache_dir=sys.argv[2])
print(json.dumps({"pyseccomp": "pyseccomp" in sys.modules, "n": len(f.programs)}))
"""


def test_warm_start_does_not_import_libseccomp(tmp_path: Path):
    section = json.dumps(podman_section())
    env = dict(os.environ, PYTHONPATH=str(REPO / "runtime"))

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", WARM, section, str(tmp_path / "c")],
                             capture_output=True, text=True, check=True, env=env).stdout
        return json.loads(out)

    assert run() == {"pyseccomp": True, "n": 1}   # cold: compiled
    assert run() == {"pyseccomp": False, "n": 1}  # warm: bytes from the cache


def test_enosys_stub_only_where_runc_adds_it():
    def prof(default: dict) -> object:
        return parse({**default, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                      "syscalls": [{"names": ["read", "mkdir"], "action": "SCMP_ACT_ALLOW"}]})

    assert enosys.applies(prof({"defaultAction": "SCMP_ACT_ERRNO"}))
    assert enosys.applies(prof({"defaultAction": "SCMP_ACT_KILL"}))
    for permissive in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"):
        assert not enosys.applies(prof({"defaultAction": permissive}))
    numbers = {("SCMP_ARCH_X86_64", "read"): 0, ("SCMP_ARCH_X86_64", "mkdir"): 83,
               ("SCMP_ARCH_X86", "read"): 3, ("SCMP_ARCH_X86", "mkdir"): 39}
    p = prof({"defaultAction": "SCMP_ACT_ERRNO"})
    last = enosys.last_syscalls(p, lambda arch, name: numbers[(arch, name)])
    assert last == {"SCMP_ARCH_X86_64": 83, "SCMP_ARCH_X86": 39}
    code = enosys.stub(last)
    insns = [struct.unpack("=HBBI", code[i:i + 8]) for i in range(0, len(code), 8)]
    assert insns[0] == (enosys.LD_W_ABS, 0, 0, 4)       # load the architecture
    assert insns[-1] == (enosys.RET, 0, 0, enosys.RET_ENOSYS)
    # every conditional jump lands inside the stub or right after it (the filter)
    for i, (op, jt, jf, _) in enumerate(insns):
        if op in (enosys.JEQ, enosys.JGT, enosys.JSET):
            assert i + 1 + max(jt, jf) <= len(insns)
    assert enosys.stub({}) == b""


X86_64 = AUDIT_ARCH["SCMP_ARCH_X86_64"]
I386 = AUDIT_ARCH["SCMP_ARCH_X86"]


def answer(program: bytes, nr: int, arch: int = X86_64, *args: int) -> int:
    return bpf.run(program, bpf.seccomp_data(nr, arch, (*args, 0, 0, 0, 0, 0, 0)[:6]))


def test_compiled_podman_profile_answers_as_written():
    section = podman_section()
    del section["defaultErrnoRet"]  # EPERM by default: runc's ENOSYS stub then applies
    code = compiler.compile_profile(parse(section), enosys_stub=True).bpf
    allow, eperm, enosys_ = 0x7FFF0000, 0x50000 | 1, 0x50000 | 38
    assert answer(code, 59) == allow                  # execve
    assert answer(code, 170) == eperm                 # sethostname: listed as ERRNO 1
    assert answer(code, 156) == eperm                 # _sysctl: not listed, below the last
    assert answer(code, 449) == enosys_               # above the last syscall named: ENOSYS
    assert answer(code, 135, X86_64, 8) == allow      # personality(PER_LINUX32)
    assert answer(code, 135, X86_64, 9) == eperm      # any other personality
    assert answer(code, 39, I386) == allow            # i386 mkdir: the x86 arch is listed
    assert answer(code, 0, 0x12345) == 0              # an unknown arch: KILL_THREAD


def test_decide_takes_the_most_severe_and_the_last_loaded_data():
    allow = compiler.compile_profile(parse({"defaultAction": "SCMP_ACT_ALLOW"})).bpf
    e13 = compiler.compile_profile(parse({"defaultAction": "SCMP_ACT_ERRNO",
                                          "defaultErrnoRet": 13})).bpf
    e1 = compiler.compile_profile(parse({"defaultAction": "SCMP_ACT_ERRNO"})).bpf
    trap = compiler.compile_profile(parse({"defaultAction": "SCMP_ACT_TRAP"})).bpf
    data = bpf.seccomp_data(39, X86_64)
    assert bpf.decide([allow, e13], data) == 0x50000 | 13
    assert bpf.decide([e13, e1], data) == 0x50000 | 1
    assert bpf.decide([e1, trap, allow], data) == 0x30000


def test_a_profile_denying_execve_is_refused_before_anything_starts():
    with pytest.raises(ConfigError, match="the filters deny execve"):
        prepare({"defaultAction": "SCMP_ACT_ERRNO"}, None, cache_dir=None)
    # a rule on execve's arguments is not a denial of every execve
    prepare({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["execve"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]}, None, cache_dir=None)


def test_install_order_with_a_policy():
    from secfilt_runtime.policy.model import Policy

    plain = {"defaultAction": "SCMP_ACT_ALLOW",
             "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    f = prepare(plain, Policy(read_only=True), cache_dir=None)
    assert [p.source for p in f.programs] == ["policy", "linux.seccomp"]
    # the policy forbids creating listeners: a NOTIFY profile must be loaded before it
    notify_ = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/a.sock",
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    f = prepare(notify_, Policy(read_only=True), cache_dir=None)
    assert [p.source for p in f.programs] == ["linux.seccomp", "policy"]
    assert f.programs[0].has_listener and not f.programs[1].has_listener
    # the policy's rules cover the i386 entry too: its program checks both architectures
    policy_prog = f.programs[1].bpf
    seen = {bpf.action(bpf.run(policy_prog, bpf.seccomp_data(0, arch)))
            for arch in (X86_64, I386, 0x12345)}
    assert 0x80000000 in seen  # an architecture it does not know is killed (the process)
    assert bpf.action(bpf.run(policy_prog, bpf.seccomp_data(0, I386))) != 0x80000000


def test_policy_calls_newer_than_libseccomp_are_not_let_through():
    """The policy names setxattrat (463) and file_setattr (469) to judge them; libseccomp 2.5
    cannot compile those names. They must not fall to the policy's ALLOW default."""
    from secfilt_runtime.policy.model import Policy

    f = prepare(None, Policy(read_only=True), cache_dir=None)
    (program,) = f.programs
    for nr in (463, 469, 999):
        for arch in (X86_64, I386):
            assert bpf.action(bpf.run(program.bpf, bpf.seccomp_data(nr, arch))) != 0x7FFF0000
    assert bpf.run(program.bpf, bpf.seccomp_data(39, X86_64)) == 0x7FFF0000  # getpid


def test_a_libseccomp_that_cannot_be_loaded_is_a_config_error(monkeypatch):
    """pyseccomp raises RuntimeError("Unable to find libseccomp") at import where the library
    is missing: the runtime names the field instead of printing a traceback."""
    from secfilt_runtime import seccomp
    from secfilt_runtime.seccomp.profile import parse

    # as in a fresh process: the compiler module not imported yet
    monkeypatch.delitem(sys.modules, "secfilt_runtime.seccomp.compiler", raising=False)
    monkeypatch.delattr(seccomp, "compiler", raising=False)
    monkeypatch.setitem(sys.modules, "pyseccomp", None)  # importing it raises ImportError
    profile = parse({"defaultAction": "SCMP_ACT_ALLOW"})
    with pytest.raises(ConfigError, match=r"^linux.seccomp: libseccomp is needed .*pyseccomp"):
        seccomp.compile_entry(profile, None, False)
