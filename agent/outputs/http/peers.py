"""Which local user is on the other end of a connection, and whether `http.allowed_uids` lists it.

The uid is found once per connection (`PeerGuard.admit` caches it per transport):

- unix socket: SO_PEERCRED, the credentials the client had when it connected;
- loopback TCP: the owner of the client's own socket in the kernel's socket table, the socket
  whose local address is our peer address and whose remote address is our local address.
  The kernel is asked for that one socket through NETLINK_SOCK_DIAG (an exact lookup, a few
  microseconds whatever the table's size); where netlink is unavailable (some sandboxes), the
  table is read from /proc/net/tcp and /proc/net/tcp6 in a worker thread, which costs
  milliseconds because the kernel walks every socket of the namespace (docs/benchmarks.md).

A socket without an inode belongs to no process any more (closed by its owner, or a TIME_WAIT
entry, which the kernel reports as uid 0): it identifies nobody, and the connection is refused.
A connection whose uid cannot be found is refused too.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket
import struct
import weakref
from asyncio import BaseTransport
from collections.abc import Awaitable, Callable, Iterable

import structlog

from agent.outputs.http.context import ApiError

log = structlog.get_logger(__name__)

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_ALL_STATES = 0xFFFFFFFF
_NO_COOKIE = 0xFFFFFFFF
# struct inet_diag_msg: family, state, timer, retrans, then the 48-byte inet_diag_sockid, then
# expires, rqueue, wqueue, uid, inode.
_DIAG_UID_INODE = struct.Struct("=II")
_DIAG_UID_OFFSET = 4 + 48 + 12
_PEERCRED = struct.Struct("=iII")  # pid, uid, gid

Address = tuple[str, int]
Owner = tuple[int, int]  # (uid, inode) of a socket


class NetlinkUnavailable(Exception):
    """The kernel does not answer sock_diag queries here."""


def _packed(family: int, host: str) -> bytes:
    raw = socket.inet_pton(family, host)
    return raw if family == socket.AF_INET6 else raw + bytes(12)


class NetlinkLookup:
    """Exact sock_diag lookups of a TCP socket's (uid, inode) by its 4-tuple."""

    def __init__(self) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
        except OSError as exc:
            raise NetlinkUnavailable(exc.strerror or str(exc)) from None
        self._seq = itertools.count(1)

    def close(self) -> None:
        self._sock.close()

    def owner(self, family: int, local: Address, remote: Address) -> Owner | None:
        """(uid, inode) of the socket bound to `local` and connected to `remote`, or None."""
        seq = next(self._seq) & 0xFFFFFFFF
        request = (
            struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, _ALL_STATES)
            + struct.pack("!HH", local[1], remote[1])
            + _packed(family, local[0])
            + _packed(family, remote[0])
            + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE)
        )
        header = _NLMSG_HEADER.pack(
            _NLMSG_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, seq, 0
        )
        try:
            self._sock.send(header + request)
            while True:
                # The kernel answers while send() runs: the reply is already queued.
                reply = self._sock.recv(8192, socket.MSG_DONTWAIT)
                _, kind, _, got_seq, _ = _NLMSG_HEADER.unpack_from(reply)
                if got_seq == seq:
                    break
        except OSError as exc:
            raise NetlinkUnavailable(exc.strerror or str(exc)) from None
        if kind == _NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", reply, _NLMSG_HEADER.size)
            if -code == errno.ENOENT:
                return None
            raise NetlinkUnavailable(errno.errorcode.get(-code, str(code)))
        uid, inode = _DIAG_UID_INODE.unpack_from(reply, _NLMSG_HEADER.size + _DIAG_UID_OFFSET)
        return uid, inode


def _proc_address(family: int, host: str, port: int) -> bytes:
    """An address as /proc/net/tcp{,6} prints it: 32-bit words in host byte order, hex."""
    raw = socket.inet_pton(family, host)
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    return ("".join(f"{w:08X}" for w in words) + f":{port:04X}").encode()


def _v4_mapped(host: str) -> str:
    return "::ffff:" + host


def proc_owner(family: int, local: Address, remote: Address) -> Owner | None:
    """(uid, inode) of the socket `local` -> `remote` from /proc/net/tcp{,6}, or None.

    An IPv4 connection may come from an IPv6 socket using a v4-mapped address: tcp6 is searched
    for that form too.
    """
    searches: list[tuple[str, int, str, str]] = []
    if family == socket.AF_INET:
        searches.append(("/proc/net/tcp", socket.AF_INET, local[0], remote[0]))
        searches.append(
            ("/proc/net/tcp6", socket.AF_INET6, _v4_mapped(local[0]), _v4_mapped(remote[0]))
        )
    else:
        searches.append(("/proc/net/tcp6", socket.AF_INET6, local[0], remote[0]))
    for path, fam, local_host, remote_host in searches:
        needle = (
            b" "
            + _proc_address(fam, local_host, local[1])
            + b" "
            + _proc_address(fam, remote_host, remote[1])
            + b" "
        )
        try:
            with open(path, "rb") as table:
                data = table.read()
        except OSError:
            continue
        at = data.find(needle)
        if at < 0:
            continue
        line = data[at : data.find(b"\n", at)].split()
        # local rem st tx:rx tr:when retrnsmt uid timeout inode
        return int(line[6]), int(line[8])
    return None


TcpOwner = Callable[[int, Address, Address], Awaitable[Owner | None]]


class KernelTable:
    """The TcpOwner the agent uses: netlink while the kernel answers it, else /proc/net read in
    a worker thread (it takes milliseconds; the event loop keeps serving meanwhile)."""

    def __init__(self) -> None:
        self._netlink: NetlinkLookup | None = None
        try:
            self._netlink = NetlinkLookup()
        except NetlinkUnavailable as exc:
            self._fall_back(str(exc))

    def close(self) -> None:
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None

    def _fall_back(self, reason: str) -> None:
        log.warning("peer_lookup_fallback", method="/proc/net/tcp", reason=reason)
        self.close()

    async def __call__(self, family: int, local: Address, remote: Address) -> Owner | None:
        if self._netlink is not None:
            try:
                return self._netlink.owner(family, local, remote)
            except NetlinkUnavailable as exc:
                self._fall_back(str(exc))
        return await asyncio.to_thread(proc_owner, family, local, remote)


async def peer_uid(transport: BaseTransport, tcp_owner: TcpOwner) -> int | None:
    """The uid of the process at the other end of `transport`, or None when unknown."""
    ours = transport.get_extra_info("sockname")
    theirs = transport.get_extra_info("peername")
    if isinstance(ours, tuple) and isinstance(theirs, tuple):  # TCP: (host, port[, flow, scope])
        family = socket.AF_INET6 if len(ours) == 4 else socket.AF_INET
        found = await tcp_owner(family, (theirs[0], theirs[1]), (ours[0], ours[1]))
        if found is None:
            return None
        uid, inode = found
        return uid if inode else None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return None
    _, uid, _ = _PEERCRED.unpack(creds)
    return int(uid)


class PeerGuard:
    """Admits a request when its connection's uid is in `allowed`; 403 otherwise.

    The uid is looked up on a connection's first request and kept, per transport, for as long
    as the transport lives.
    """

    def __init__(self, allowed: Iterable[int], tcp_owner: TcpOwner | None = None) -> None:
        self.allowed = frozenset(allowed)
        self._table: KernelTable | None = None
        if tcp_owner is None:
            tcp_owner = self._table = KernelTable()
        self._tcp_owner = tcp_owner
        self._uids: weakref.WeakKeyDictionary[BaseTransport, int | None] = (
            weakref.WeakKeyDictionary()
        )

    def close(self) -> None:
        if self._table is not None:
            self._table.close()

    async def uid_of(self, transport: BaseTransport) -> int | None:
        try:
            return self._uids[transport]
        except KeyError:
            uid = self._uids[transport] = await peer_uid(transport, self._tcp_owner)
            return uid

    async def admit(self, transport: BaseTransport | None) -> None:
        uid = None if transport is None else await self.uid_of(transport)
        if uid in self.allowed:
            return
        if uid is None:
            raise ApiError(
                403,
                "AccessDeniedException",
                "the connecting process could not be identified; http.allowed_uids is set, so "
                "only connections from a listed uid are answered",
            )
        raise ApiError(
            403, "AccessDeniedException", f"uid {uid} is not in http.allowed_uids of this agent"
        )
