"""What `create` saves in state.json for `exec`: the container's policy and linux.seccomp, and
the init's capabilities and rlimits.

An exec'd process must be confined as the container was created, whatever the bundle's
config.json says by then: an engine, or anyone who can edit the file after create, must not
be able to widen (or drop) the confinement of the processes exec adds. So the policy, as it was
resolved at create (canonical allow-write paths, the nameservers allow-resolv found), and the
linux.seccomp section go into state.json as plain JSON, and exec reads them from there only.

The capabilities and rlimits are what an exec'd process gets when it does not give its own,
as runc's exec takes them from the container's config (libcontainer's newInitConfig); without
them saved, the process would keep the runtime's full root set. A state.json written before
they were saved has no "capabilities" key (`SavedProcess.capabilities` is MISSING): exec then
refuses a process file that gives none rather than guess, and its command-line form takes
config.json's, as before, with a warning (execproc).

`to_state` runs in create and imports nothing; `from_state` and `saved_process` run in exec
and check every field: a damaged state refuses the exec, it never leaves the process less
confined.
"""

from __future__ import annotations

from .errors import StateError

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .policy.model import Policy
    from .spec import Capabilities, Process, Rlimit

_BOOLS = ("read_only", "no_outbound_network", "allow_resolv", "mainstream_network_families")
_NETWORKS = ("netmasks", "nameservers")


_CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
MISSING = "missing"  # SavedProcess.capabilities of a state.json older than the saving of them


def to_state(policy: Policy | None, seccomp: dict[str, Any] | None,
             process: Process | None = None) -> dict[str, Any]:
    """The saved form: {"policy": {...} or None, "seccomp": {...} or None, "capabilities":
    {set: [names]} or None (the init keeps what the runtime has), "rlimits": [...],
    "noNewPrivileges": bool}."""
    doc = None
    if policy is not None:
        doc = {
            **{name: getattr(policy, name) for name in _BOOLS},
            "allow_write": list(policy.allow_write),
            **{name: [str(n) for n in getattr(policy, name)] for name in _NETWORKS},
            "ports": list(policy.ports),
            "log_path": policy.log_path,
            "mode": policy.mode,
            "errno": policy.errno,
            "sources": dict(policy.sources),
        }
    caps = process.capabilities if process is not None else None
    return {
        "policy": doc, "seccomp": seccomp,
        "capabilities": None if caps is None else {k: list(getattr(caps, k)) for k in _CAP_SETS},
        "rlimits": [{"type": r.type, "soft": r.soft, "hard": r.hard}
                    for r in (process.rlimits if process is not None else ())],
        "noNewPrivileges": process is not None and process.no_new_privileges,
    }


def from_state(saved: Any, container_id: str, *, traced: bool
               ) -> tuple[Policy | None, dict[str, Any] | None]:
    """The policy and linux.seccomp saved by create. `traced`: state.json names a tracer
    socket (the container was created under a policy). Raises StateError naming the field."""
    where = f"container {container_id}: state.json"
    if not isinstance(saved, dict) or not {"policy", "seccomp"} <= saved.keys():
        raise StateError(f"{where} has no saved confinement (the policy and linux.seccomp of "
                         "create): damaged, or written by an older secfilt-runtime; exec "
                         "refused, delete and create the container again")
    seccomp = saved["seccomp"]
    if seccomp is not None and not isinstance(seccomp, dict):
        raise StateError(f"{where}: confinement.seccomp must be an object or null")
    doc = saved["policy"]
    if doc is None:
        if traced:
            raise StateError(f"{where}: confinement.policy is gone but the container was "
                             "created under a policy (it has a tracer); exec refused")
        return None, seccomp
    if not traced:
        raise StateError(f"{where}: confinement.policy is set but the container has no "
                         "tracer to serve it; exec refused")
    return _policy(doc, f"{where}: confinement.policy"), seccomp


def _policy(doc: Any, where: str) -> Policy:
    from ipaddress import ip_network

    from .policy.model import Policy

    if not isinstance(doc, dict):
        raise StateError(f"{where}: must be an object")

    def field(name: str, check: Any, what: str) -> Any:
        if name not in doc or not check(doc[name]):
            raise StateError(f"{where}.{name}: must be {what}")
        return doc[name]

    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    values: dict[str, Any] = {
        name: field(name, lambda v: isinstance(v, bool), "true or false") for name in _BOOLS}
    values["allow_write"] = tuple(field(
        "allow_write", lambda v: strings(v) and all(p.startswith("/") for p in v),
        "a list of absolute paths"))
    for name in _NETWORKS:
        try:
            values[name] = tuple(ip_network(n) for n in field(name, strings, "a list of "
                                                                "networks"))
        except ValueError as e:
            raise StateError(f"{where}.{name}: {e}") from None
    values["ports"] = tuple(field(
        "ports", lambda v: isinstance(v, list) and all(
            type(p) is int and 0 < p < 65536 for p in v), "a list of ports"))
    values["log_path"] = field("log_path", lambda v: v is None or isinstance(v, str),
                               "a path or null")
    values["mode"] = field("mode", lambda v: v in ("enforce", "audit"), '"enforce" or "audit"')
    values["errno"] = field("errno", lambda v: type(v) is int and 0 < v < 4096,
                            "an errno number")
    values["sources"] = dict(field(
        "sources", lambda v: isinstance(v, dict)
        and all(isinstance(x, str) for x in (*v, *v.values())), "an object of strings"))
    return Policy(**values)


# Capabilities that undo a restriction of the policy which no other layer takes back from a
# process holding them: the restriction (a Policy property) and how. CAP_NET_ADMIN rewrites
# where the network namespace sends packets (an nftables DNAT, a route, a tunnel) after the
# cgroup programs and the tracer judged the address, with nothing the filter refuses
# (netlink is an allowed family). Not here, each checked against the filter: CAP_NET_RAW (raw
# and packet sockets and the routing socket options are refused under destination rules),
# CAP_SYS_ADMIN and CAP_BPF (bpf, the mount family and setns into a cgroup namespace are
# refused, the cgroup mounts read-only), and nothing against the write rules (Landlock and
# the read-only mounts bind root too, the mount family is refused).
DEFEATING: dict[str, tuple[str, str]] = {
    "CAP_NET_ADMIN": (
        "restricts_destinations",
        "a process rewrites where the network sends packets (an nftables DNAT, a route or a tunnel "
        "sends an allowed address's packets to a forbidden host) after the destination "
        "rules have judged the address"),
}


def holds(caps: Capabilities | str | None, name: str) -> bool | None:
    """Does a process with `caps` hold capability `name` in any set (bounding and inheritable
    included: execve raises it from there)? None (no capabilities given) keeps the runtime's
    full root set: yes. MISSING (a state.json older than their saving): None, unknown."""
    if caps is None:
        return True
    if isinstance(caps, str):  # MISSING
        return None
    return any(name in getattr(caps, k) for k in _CAP_SETS)


def refused_capabilities(policy: Policy | None, caps: Capabilities | None,
                         init_caps: Capabilities | str | None) -> tuple[str, ...]:
    """The capabilities of DEFEATING that a process exec adds with `caps` would hold, that
    defeat a restriction of `policy`, and that the container's init did not hold (`init_caps`,
    as create saved them; MISSING counts as not held: exec cannot tell). What the bundle
    granted the init stays the container's own choice, as it is for the init."""
    if policy is None:
        return ()
    return tuple(name for name, (restricts, _) in DEFEATING.items()
                 if getattr(policy, restricts) and holds(caps, name)
                 and holds(init_caps, name) is not True)


def capability_refusal(policy: Policy, refused: tuple[str, ...],
                       init_caps: Capabilities | str | None) -> str:
    """exec's message for what refused_capabilities found (not empty)."""
    from .policy import decide

    rules = {"restricts_destinations": f"destination rules ({decide.destination_rule(policy)})"}
    whys = "; ".join(f"with {name} {DEFEATING[name][1]}, which defeats the container's "
                     f"{rules[DEFEATING[name][0]]}" for name in refused)
    names = ", ".join(refused)
    if isinstance(init_caps, str):
        init = f"and exec cannot tell whether the container's init held {names} (state.json " \
            "predates the saving of capabilities)"
    else:
        init = "which the container's init was not granted"
    return (f"exec refused: the process would hold {names}, {init}: {whys}. Leave it out "
            "(--cap, or process.capabilities of --process), or grant it in the bundle's "
            "process.capabilities when the container is created")


class SavedProcess:
    """The init's capabilities (a Capabilities, None, or MISSING), rlimits and
    noNewPrivileges (None when the state predates their saving), for the process exec adds."""

    __slots__ = ("capabilities", "rlimits", "no_new_privileges")

    def __init__(self, capabilities: Capabilities | str | None,
                 rlimits: tuple[Rlimit, ...] | None,
                 no_new_privileges: bool | None = None) -> None:
        self.capabilities = capabilities
        self.rlimits = rlimits
        self.no_new_privileges = no_new_privileges


def saved_process(saved: dict[str, Any], container_id: str) -> SavedProcess:
    """What create saved of the init's process; `saved` has passed from_state. Raises
    StateError naming the field."""
    from .container.capabilities import CAPABILITIES
    from .container.process import RLIMITS
    from .spec import Capabilities, Rlimit

    where = f"container {container_id}: state.json: confinement"
    caps: Capabilities | str | None = MISSING
    if "capabilities" in saved:
        doc = saved["capabilities"]
        if doc is None:
            caps = None
        elif isinstance(doc, dict) and set(doc) == set(_CAP_SETS) and all(
                isinstance(v, list) and all(n in CAPABILITIES for n in v) for v in doc.values()):
            caps = Capabilities(**{k: tuple(v) for k, v in doc.items()})
        else:
            raise StateError(f"{where}.capabilities: must be null or an object of the five "
                             "sets, each a list of capability names")
    rlimits = None
    if "rlimits" in saved:
        doc = saved["rlimits"]
        if not isinstance(doc, list) or not all(
                isinstance(r, dict) and r.keys() == {"type", "soft", "hard"}
                and r["type"] in RLIMITS and type(r["soft"]) is int and type(r["hard"]) is int
                for r in doc):
            raise StateError(f"{where}.rlimits: must be a list of {{type, soft, hard}}")
        rlimits = tuple(Rlimit(r["type"], r["soft"], r["hard"]) for r in doc)
    no_new_privileges = saved.get("noNewPrivileges")
    if no_new_privileges is not None and type(no_new_privileges) is not bool:
        raise StateError(f"{where}.noNewPrivileges: must be a boolean")
    return SavedProcess(caps, rlimits, no_new_privileges)
