"""peers.py: the uid at the other end of a real connection, by each lookup, and once per
connection. Sockets owned by uid 65534 are made by this (root) process under a borrowed euid."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.outputs.http.context import ApiError
from agent.outputs.http.peers import (
    Address,
    KernelTable,
    NetlinkLookup,
    NetlinkUnavailable,
    Owner,
    PeerGuard,
    TcpOwner,
    peer_uid,
    proc_owner,
)
from tests.support.waiting import async_wait_until

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="makes sockets as another uid")


@contextmanager
def as_uid(uid: int) -> Iterator[None]:
    """A socket created in this block is owned by `uid` (the kernel takes the fsuid)."""
    if uid == os.geteuid():
        yield
        return
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


async def netlink_owner(family: int, local: Address, remote: Address) -> Owner | None:
    lookup = NetlinkLookup()
    try:
        return lookup.owner(family, local, remote)
    finally:
        lookup.close()


async def procfs_owner(family: int, local: Address, remote: Address) -> Owner | None:
    return proc_owner(family, local, remote)


LOOKUPS: dict[str, TcpOwner] = {"netlink": netlink_owner, "proc": procfs_owner}


@asynccontextmanager
async def server_side(
    family: int, host: str
) -> AsyncIterator[tuple[asyncio.Queue[asyncio.BaseTransport], int]]:
    """A listening server; each accepted connection's transport is put on the queue."""
    accepted: asyncio.Queue[asyncio.BaseTransport] = asyncio.Queue()
    done = asyncio.Event()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer.transport)
        await done.wait()  # our side stays open, whatever the client does
        writer.close()

    server = await asyncio.start_server(on_connect, host, 0, family=family)
    try:
        yield accepted, server.sockets[0].getsockname()[1]
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def connect_as(uid: int, family: int, address: tuple[str, int] | str) -> socket.socket:
    with as_uid(uid):
        client = socket.socket(family, socket.SOCK_STREAM)
    client.setblocking(False)
    await asyncio.get_running_loop().sock_connect(client, address)
    return client


@root_only
@pytest.mark.parametrize("lookup", sorted(LOOKUPS))
@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
async def test_tcp_peer_uid_is_the_client_sockets_owner(
    lookup: str, family: int, host: str
) -> None:
    async with server_side(family, host) as (accepted, port):
        for uid in (NOBODY, 0):
            client = await connect_as(uid, family, (host, port))
            try:
                transport = await asyncio.wait_for(accepted.get(), 5)
                assert await peer_uid(transport, LOOKUPS[lookup]) == uid
            finally:
                client.close()


@root_only
async def test_an_ipv6_client_reaching_an_ipv4_listener_is_found() -> None:
    async with server_side(socket.AF_INET, "127.0.0.1") as (accepted, port):
        client = await connect_as(NOBODY, socket.AF_INET6, ("::ffff:127.0.0.1", port))
        try:
            transport = await asyncio.wait_for(accepted.get(), 5)
            for lookup in LOOKUPS.values():
                assert await peer_uid(transport, lookup) == NOBODY
        finally:
            client.close()


@root_only
async def test_unix_peer_uid_comes_from_so_peercred() -> None:
    """SO_PEERCRED holds the credentials of whoever called connect()."""
    accepted: asyncio.Queue[asyncio.BaseTransport] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer.transport)

    folder = Path(tempfile.mkdtemp(prefix="peers-"))  # pytest's tmp_path is 0700 to others
    try:
        folder.chmod(0o755)
        path = folder / "s.sock"
        server = await asyncio.start_unix_server(on_connect, str(path))
        path.chmod(0o666)
        try:
            with as_uid(NOBODY):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.connect(str(path))
            try:
                transport = await asyncio.wait_for(accepted.get(), 5)
                assert await peer_uid(transport, procfs_owner) == NOBODY
            finally:
                client.close()
        finally:
            server.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@root_only
@pytest.mark.parametrize("lookup", sorted(LOOKUPS))
async def test_a_client_that_closed_its_socket_identifies_nobody(lookup: str) -> None:
    """An orphaned socket becomes a kernel TIME_WAIT entry that reports uid 0: read naively,
    an unlisted user who sends a request and closes at once would pass as root."""
    async with server_side(socket.AF_INET, "127.0.0.1") as (accepted, port):
        client = await connect_as(NOBODY, socket.AF_INET, ("127.0.0.1", port))
        transport = await asyncio.wait_for(accepted.get(), 5)
        client.close()
        sock = transport.get_extra_info("socket")
        theirs, ours = sock.getpeername(), sock.getsockname()

        def orphaned() -> bool:
            found = proc_owner(socket.AF_INET, theirs, ours)  # the kernel's view, either way
            return found is None or found[1] == 0

        await async_wait_until(orphaned, 5, what="the client socket orphaned")
        assert await peer_uid(transport, LOOKUPS[lookup]) is None


async def test_the_guard_looks_up_once_per_connection() -> None:
    calls: list[Address] = []

    async def counting(family: int, local: Address, remote: Address) -> Owner | None:
        calls.append(local)
        return proc_owner(family, local, remote)

    guard = PeerGuard([os.getuid()], tcp_owner=counting)
    async with server_side(socket.AF_INET, "127.0.0.1") as (accepted, port):
        first = await connect_as(os.getuid(), socket.AF_INET, ("127.0.0.1", port))
        second = await connect_as(os.getuid(), socket.AF_INET, ("127.0.0.1", port))
        try:
            one = await asyncio.wait_for(accepted.get(), 5)
            two = await asyncio.wait_for(accepted.get(), 5)
            for _ in range(3):
                await guard.admit(one)
            await guard.admit(two)
            assert len(calls) == 2
        finally:
            first.close()
            second.close()


async def test_the_guard_refuses_an_unlisted_or_unknown_uid() -> None:
    guard = PeerGuard([12345], tcp_owner=procfs_owner)
    async with server_side(socket.AF_INET, "127.0.0.1") as (accepted, port):
        client = await connect_as(os.getuid(), socket.AF_INET, ("127.0.0.1", port))
        try:
            transport = await asyncio.wait_for(accepted.get(), 5)
            with pytest.raises(ApiError) as refused:
                await guard.admit(transport)
            assert (refused.value.status, refused.value.code) == (403, "AccessDeniedException")
            assert f"uid {os.getuid()} is not in http.allowed_uids" in refused.value.message
        finally:
            client.close()
    with pytest.raises(ApiError) as unknown:
        await guard.admit(None)  # the connection is already gone
    assert "could not be identified" in unknown.value.message


async def test_the_kernel_table_reads_proc_in_a_thread_when_netlink_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the kernel does not answer sock_diag, the /proc scan (milliseconds) runs off the
    event loop, and the switch is logged once."""
    table = KernelTable()

    def refuse(*args: object) -> Owner | None:
        raise NetlinkUnavailable("EPROTONOSUPPORT")

    loop_thread = threading.get_ident()
    threads: list[int] = []

    def scan(family: int, local: Address, remote: Address) -> Owner | None:
        threads.append(threading.get_ident())
        return proc_owner(family, local, remote)

    assert table._netlink is not None
    monkeypatch.setattr(table._netlink, "owner", refuse)
    monkeypatch.setattr("agent.outputs.http.peers.proc_owner", scan)
    async with server_side(socket.AF_INET, "127.0.0.1") as (accepted, port):
        client = await connect_as(os.getuid(), socket.AF_INET, ("127.0.0.1", port))
        try:
            transport = await asyncio.wait_for(accepted.get(), 5)
            with capture_logs() as logs:
                assert await peer_uid(transport, table) == os.getuid()
                assert await peer_uid(transport, table) == os.getuid()
        finally:
            client.close()
    assert len(threads) == 2 and loop_thread not in threads
    assert [e["event"] for e in logs] == ["peer_lookup_fallback"]
    table.close()
