"""The address rule for outbound requests Agentry makes on someone's behalf: which addresses are refused
unless an allow-list names them. One rule, used by the http tool (agentry_workspace/tools/netpolicy.py,
also copied into the egress proxy image) and by the API's notification sinks.

Refused by default: loopback, private, link-local, the cloud metadata servers, multicast, reserved,
unspecified, and IPv6 forms that embed or tunnel IPv4 (mapped, 6to4, Teredo, NAT64 of a refused one).
Standard library only: the egress proxy runs it with Debian's python3.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_EXTRA_RESERVED = tuple(ipaddress.ip_network(n) for n in ("192.0.0.0/24", "fec0::/10", "100::/64"))


def address_problem(ip: IPAddress) -> str | None:
    """Why a connection to this address is refused by default, or None for a public address."""
    if ip in METADATA:
        return "the cloud metadata server"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if ip.sixtofour is not None:
            return "a 6to4 address (tunnels IPv4)"
        if ip.teredo is not None:
            return "a Teredo address (tunnels IPv4)"
        if ip in _NAT64:
            inner = address_problem(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
            return f"a NAT64 address embedding {inner}" if inner else None
    for label, hit in (
        ("an unspecified", ip.is_unspecified),
        ("a loopback", ip.is_loopback),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a reserved", ip.is_reserved or any(ip in n for n in _EXTRA_RESERVED)),
        ("a private", ip.is_private),
        ("a non-global", not ip.is_global),
    ):
        if hit:
            return f"{label} address"
    return None
