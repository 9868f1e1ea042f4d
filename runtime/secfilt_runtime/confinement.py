"""What `create` saves in state.json for `exec`: the container's policy and linux.seccomp.

An exec'd process must be confined as the container was created, whatever the bundle's
config.json says by then: an engine, or anyone who can edit the file after create, must not
be able to widen (or drop) the confinement of the processes exec adds. So the policy, as it was
resolved at create (canonical allow-write paths, the nameservers allow-resolv found), and the
linux.seccomp section go into state.json as plain JSON, and exec reads them from there only.

`to_state` runs in create and imports nothing; `from_state` runs in exec and checks every
field: a damaged state refuses the exec, it never leaves the process less confined.
"""

from __future__ import annotations

from .errors import StateError

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .policy.model import Policy

_BOOLS = ("read_only", "no_outbound_network", "allow_resolv", "mainstream_network_families")
_NETWORKS = ("netmasks", "nameservers")


def to_state(policy: Policy | None, seccomp: dict[str, Any] | None) -> dict[str, Any]:
    """The saved form: {"policy": {...} or None, "seccomp": {...} or None}."""
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
    return {"policy": doc, "seccomp": seccomp}


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
