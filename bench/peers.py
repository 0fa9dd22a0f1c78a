"""Local peers: what finding the connecting process's uid costs per new connection.

With `http.allowed_uids` set, the agent looks up the uid that owns the client's socket once per
connection. Two measurements, each with N idle loopback connections held open by this program
(so the kernel's socket table holds at least 2N more sockets):

- the lookup alone, in this process: the netlink sock_diag query the agent uses, and the
  /proc/net/tcp{,6} scan it falls back to where netlink is unavailable;
- a new connection's round trip (connect, `GET /ping`, the agent closes) against two real agent
  processes started alike, one without `allowed_uids` (the reference) and one with it, measured
  alternately in one run.
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from agent.outputs.http.peers import Address, NetlinkLookup, proc_owner
from bench import report
from bench.common import (
    CHILDREN,
    agent_argv,
    agent_env,
    percentile,
    progress,
    table,
    wait_for_ready,
    write_agent_config,
)
from tests.support.moto import free_port

IDLE = (10, 1_000)
ROUND_TRIPS = 3_000  # per agent and N
NETLINK_CALLS = 5_000
PROC_CALLS = 100
REQUEST = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


@contextmanager
def idle_connections(n: int) -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """`n` connected loopback pairs (2n sockets in the table), closed on exit."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(n)
    pairs: list[tuple[socket.socket, socket.socket]] = []
    try:
        for _ in range(n):
            client = socket.create_connection(server.getsockname())
            accepted, _ = server.accept()
            pairs.append((client, accepted))
        yield pairs
    finally:
        for client, accepted in pairs:
            client.close()
            accepted.close()
        server.close()


def table_rows() -> int:
    rows = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path, "rb") as f:
            rows += f.read().count(b"\n") - 1
    return rows


def per_call_us(call: Callable[[], object], calls: int) -> float:
    """The median of `calls` timed calls, in microseconds."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def round_trip(port: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(REQUEST)
        while conn.recv(65536):
            pass
    return time.perf_counter() - started


def loop_cpu_ns(pid: int) -> int:
    """CPU time of the process's main thread (where the event loop runs), in nanoseconds."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def start_agent(work: Path, name: str, http_extra: dict[str, object]) -> tuple[int, int]:
    port = free_port()
    folder = work / name
    folder.mkdir()
    (folder / "values.toml").write_text('"/bench/peer" = "x"\n')
    config = write_agent_config(
        folder / "config.toml",
        {
            "source": {"type": "file", "path": "values.toml"},
            "parameters": [{"path": "/bench"}],
            "http": {"listen": f"127.0.0.1:{port}", "token_file": "token", **http_extra},
            "log": {"level": "warning", "format": "json"},
        },
    )
    proc = CHILDREN.start(agent_argv(config), env=agent_env(), cwd=folder, cpu="0")
    wait_for_ready(f"http://127.0.0.1:{port}", proc, 60)
    return port, proc.pid


def measure() -> str:
    # The agents on CPU 0, this client on CPU 1 (as bench.serving does).
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    plain, plain_pid = start_agent(work, "plain", {})
    guarded, guarded_pid = start_agent(work, "guarded", {"allowed_uids": [os.getuid()]})
    # A second agent without allowed_uids: how far two identical agents differ (the noise).
    control, control_pid = start_agent(work, "control", {})
    pids = {plain: plain_pid, guarded: guarded_pid, control: control_pid}
    netlink = NetlinkLookup()
    rows = []
    for n in IDLE:
        with idle_connections(n) as pairs:
            client, accepted = pairs[-1]
            theirs: Address = client.getsockname()
            ours: Address = accepted.getsockname()
            found = netlink.owner(socket.AF_INET, theirs, ours)
            assert found is not None and found[0] == os.getuid(), found
            assert proc_owner(socket.AF_INET, theirs, ours) == found
            sockets = table_rows()
            progress(f"N={n}: {sockets} sockets in the table; lookups")
            netlink_us = per_call_us(
                partial(netlink.owner, socket.AF_INET, theirs, ours), NETLINK_CALLS
            )
            proc_us = per_call_us(partial(proc_owner, socket.AF_INET, theirs, ours), PROC_CALLS)
            progress(f"N={n}: round trips")
            times: dict[int, list[float]] = {port: [] for port in pids}
            cpu_before = {port: loop_cpu_ns(pid) for port, pid in pids.items()}
            for _ in range(ROUND_TRIPS):
                for port in pids:  # in turn: drift hits all alike
                    times[port].append(round_trip(port))
            cpu = {
                port: (loop_cpu_ns(pid) - cpu_before[port]) / ROUND_TRIPS / 1e3
                for port, pid in pids.items()
            }
            sockets_after = table_rows()
        p50 = {port: statistics.median(t) * 1e6 for port, t in times.items()}
        p90 = {port: percentile(t, 90) * 1e6 for port, t in times.items()}
        report.record(
            f"idle/{n}",
            {
                "netlink_lookup_us": round(netlink_us, 2),
                "proc_scan_us": round(proc_us),
                "cpu_per_connection_us": {
                    "without": round(cpu[plain], 1),
                    "with": round(cpu[guarded], 1),
                    "control": round(cpu[control], 1),
                },
            },
        )
        rows.append(
            (
                f"{n:,}",
                f"{sockets:,} to {sockets_after:,}",
                f"{netlink_us:.1f} us",
                f"{proc_us:,.0f} us",
                " / ".join(f"{p50[p]:.0f} ({p90[p]:.0f})" for p in (plain, guarded, control)),
                f"{p50[guarded] - p50[plain]:+.0f} us (control {p50[control] - p50[plain]:+.0f})",
                " / ".join(f"{cpu[p]:.0f}" for p in (plain, guarded, control)),
                f"{cpu[guarded] - cpu[plain]:+.0f} us (control {cpu[control] - cpu[plain]:+.0f})",
            )
        )
    netlink.close()
    headers = [
        "idle connections (N)",
        "sockets in the table (tcp + tcp6)",
        "netlink lookup",
        "/proc/net scan",
        "new connection + GET /ping, us p50 (p90): without / with / control",
        "difference (p50)",
        "agent CPU per connection, us: without / with / control",
        "difference (CPU)",
    ]
    return (
        "With `http.allowed_uids` set the agent finds the connecting uid once per connection "
        "(see [http-api.md](http-api.md#local-peers)). Lookup times are the median of "
        f"{NETLINK_CALLS:,} netlink / {PROC_CALLS} /proc calls in the benchmark process; round "
        f"trips are {ROUND_TRIPS:,} new connections per agent (connect, `GET /ping`, the agent "
        "closes), in turn against three agent processes (file source, uvloop): *without* "
        "`allowed_uids`, *with* it, and a *control* configured like the first, whose "
        "difference from the first shows the noise. The agents run on CPU 0, the client on "
        "CPU 1.\n\n" + table(headers, rows) + "\n\nNotes:\n\n"
        "- The netlink query (`NETLINK_SOCK_DIAG`, an exact 4-tuple lookup) costs the same "
        "whatever the table's size; the agent uses it. The /proc scan is the fallback for "
        "kernels or sandboxes without sock_diag: the kernel walks every socket of the network "
        "namespace for each read, so it costs milliseconds per new connection, growing with "
        "the table (here mostly other work's sockets). The agent runs it in a worker thread, "
        "so the event loop keeps serving, and logs `peer_lookup_fallback` once when it has to "
        "use it.\n"
        "- Agent CPU: the event-loop thread's CPU time (`/proc/PID/schedstat`) over the round "
        "trips, divided by their number; less sensitive to other work on the machine than the "
        "wall-clock times.\n"
        "- The table holds more than 2N sockets: other processes of the machine, and the "
        "TIME_WAIT entries the round trips leave (the agent closes first).\n"
        "- The agent's cost per new connection is more than the lookup's: two netlink "
        "syscalls on a cold cache, the peer and local addresses, the per-connection cache "
        "entry. Keep-alive requests on a connection pay only the cache lookup (well under a "
        "microsecond). Without `allowed_uids` the guard adds one `is not None` test per "
        "request.\n"
    )


def main() -> int:
    return report.run("peers", "Local peers: uid lookup per new connection", "bench.peers", measure)


if __name__ == "__main__":
    raise SystemExit(main())
