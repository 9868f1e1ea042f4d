"""The far end of the network attacks: listens with TCP and UDP on each ADDR at PORT, inside the
network namespace the test made, and appends one line per arrival to RECORD:
`tcp|udp LOCAL-ADDR PAYLOAD`.  It also watches lo itself (a packet socket) and records
`wire DEST-ADDR PAYLOAD` for every packet addressed to one of the ADDRs but the first, so a packet
that reaches a forbidden host without reaching its socket (a source route's first hop) is seen
too.  Prints "ready" once every socket is bound.

usage: python peer.py RECORD PORT ADDR...
"""

from __future__ import annotations

import ipaddress
import selectors
import socket
import sys
import threading

ETH_P_ALL = 0x0003


def destination(packet: bytes) -> str | None:
    """The destination address of an IPv4 or IPv6 packet (an Ethernet frame on lo)."""
    ip = packet[14:]
    if ip[:1] and ip[0] >> 4 == 4 and len(ip) >= 20:
        return str(ipaddress.IPv4Address(ip[16:20]))
    if ip[:1] and ip[0] >> 4 == 6 and len(ip) >= 40:
        return str(ipaddress.IPv6Address(ip[24:40]))
    return None


def open_sniffer() -> socket.socket:
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sniffer.bind(("lo", 0))
    return sniffer


def watch_wire(sniffer: socket.socket, out, watched: set[str], lock: threading.Lock) -> None:
    while True:
        packet = sniffer.recv(65535)
        dest = destination(packet)
        if dest in watched:
            # the payload's printable tail is enough to find the attack's marker
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in packet[-64:])
            with lock:
                out.write(f"wire {dest} {text}\n")


def main(record: str, port: int, addrs: list[str]) -> None:
    sel = selectors.DefaultSelector()
    for addr in addrs:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(family, kind)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            if kind == socket.SOCK_STREAM:
                s.listen(64)
            sel.register(s, selectors.EVENT_READ, ("listen" if kind == socket.SOCK_STREAM
                                                   else "udp", addr))
    lock = threading.Lock()
    with open(record, "a", buffering=1) as out:
        watched = {str(ipaddress.ip_address(a)) for a in addrs[1:]}
        # bound before "ready": a packet sent right after must already be seen
        sniffer = open_sniffer()
        threading.Thread(target=watch_wire, args=(sniffer, out, watched, lock),
                         daemon=True).start()
        print("ready", flush=True)
        while True:
            for key, _ in sel.select():
                s, (what, addr) = key.fileobj, key.data
                if what == "listen":
                    conn, _ = s.accept()
                    conn.settimeout(2)
                    sel.register(conn, selectors.EVENT_READ, ("tcp", addr))
                    continue
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if what == "tcp" and not data:
                    sel.unregister(s)
                    s.close()
                    continue
                with lock:
                    out.write(f"{what} {addr} {data.decode(errors='replace').strip()}\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
