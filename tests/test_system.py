"""Which sysctls a container may set: pure decisions."""

from __future__ import annotations

import pytest

from secfilt_runtime.container import system
from secfilt_runtime.errors import ConfigError


@pytest.mark.parametrize(("key", "ns"), [
    ("net.ipv4.ip_forward", "network"), ("net/ipv4/conf/eth0.100/forwarding", "network"),
    ("kernel.shmmax", "ipc"), ("fs.mqueue.msg_max", "ipc"), ("kernel.hostname", "uts"),
    ("kernel.panic", None), ("vm.overcommit_memory", None),
])
def test_namespace_of_a_sysctl(key, ns):
    assert system.sysctl_namespace(".".join(system.sysctl_components(key))) == ns


@pytest.mark.parametrize("key", [
    "net.ipv4/../../kernel/panic", "net/ipv4/../../kernel/panic", "net..ipv4", "net.", "/net/x",
    "net/./ipv4",
])
def test_keys_that_could_leave_their_subtree_are_refused(key):
    with pytest.raises(ConfigError, match="not a sysctl name"):
        system.sysctl_components(key)
