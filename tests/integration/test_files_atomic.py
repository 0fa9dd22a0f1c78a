"""A separate reader process never sees a torn file nor a mix of two sets during rapid updates."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

from agent.config import FilesConfig
from agent.metrics import Metrics
from agent.outputs.files.output import FilesOutput
from agent.snapshot import Snapshot
from tests.support.builders import values_snapshot
from tests.support.waiting import wait_until

UPDATES = 200

# The reader: open `..data` once per round (one resolution = one set), read both files through
# that directory fd, and also read each file on its own through the top-level symlink. A round
# that loses its set to the cleanup (ENOENT) is retried, as the docs tell applications to do.
READER = r"""
import hashlib, json, os, sys

root, stop, ready = sys.argv[1], sys.argv[2], sys.argv[3]

def parse(data):
    seq, digest, payload = data.split(b":", 2)
    return int(seq), hashlib.sha256(payload).hexdigest().encode() == digest

def read_at(dir_fd, name):
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)

stats = {"rounds": 0, "torn": 0, "mixed": 0, "retired": 0, "seqs": [],
         "link_reads": 0, "link_torn": 0}
seen = set()
open(ready, "w").close()
while not os.path.exists(stop):
    try:
        dir_fd = os.open(os.path.join(root, "..data"), os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        continue
    try:
        a, b = read_at(dir_fd, "pair/a"), read_at(dir_fd, "pair/b")
    except FileNotFoundError:
        stats["retired"] += 1
        continue
    finally:
        os.close(dir_fd)
    (seq_a, ok_a), (seq_b, ok_b) = parse(a), parse(b)
    stats["rounds"] += 1
    stats["torn"] += (not ok_a) + (not ok_b)
    stats["mixed"] += seq_a != seq_b
    seen.add(seq_a)
    for name in ("pair/a", "pair/b"):
        try:
            with open(os.path.join(root, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        stats["link_reads"] += 1
        stats["link_torn"] += not parse(data)[1]
stats["seqs"] = sorted(seen)
print(json.dumps(stats))
"""


def _value(seq: int, rng: random.Random) -> str:
    # Sizes vary a lot, so a torn or interleaved write could not go unnoticed.
    payload = rng.randbytes(rng.randint(1, 100_000)).hex()
    return f"{seq}:{hashlib.sha256(payload.encode()).hexdigest()}:{payload}"


def _pair(seq: int, rng: random.Random) -> Snapshot:
    """/app/pair/a and /app/pair/b, both at version `seq`."""
    return values_snapshot({"pair/a": _value(seq, rng), "pair/b": _value(seq, rng)}, generation=seq)


async def test_reader_never_sees_a_torn_file_or_a_mix_of_sets(tmp_path: Path) -> None:
    files_dir = tmp_path / "params"
    output = FilesOutput(FilesConfig(dir=files_dir), Metrics())
    rng = random.Random(4)
    previous = _pair(0, rng)
    await output.publish(previous, previous.diff(previous), True)

    stop, ready = tmp_path / "stop", tmp_path / "ready"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(files_dir), str(stop), str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(ready.exists, 15, what="reader started")
        for seq in range(1, UPDATES + 1):
            snapshot = _pair(seq, rng)
            change = previous.diff(snapshot)
            assert change.updated
            await output.publish(snapshot, change, False)
            previous = snapshot
        stop.touch()
        out, err = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err.decode()
    stats = json.loads(out)
    print(
        {k: v for k, v in stats.items() if k != "seqs"}, "distinct sets seen:", len(stats["seqs"])
    )
    assert stats["torn"] == 0 and stats["link_torn"] == 0, stats
    assert stats["mixed"] == 0, stats
    # The reader really ran while the sets were being swapped.
    assert stats["rounds"] >= UPDATES, stats
    assert len(stats["seqs"]) >= 20, {k: v for k, v in stats.items() if k != "seqs"}
    assert (files_dir / "pair" / "a").read_text().startswith(f"{UPDATES}:")
    assert len([n for n in files_dir.iterdir() if n.name.startswith("..2")]) == 1
