"""FilesOutput on a real directory: AtomicWriter layout, modes, owners, skips, failures."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from agent.outputs.base import NotDelivered
from tests.support.builders import parameter
from tests.support.files_output import SET_NAME, FilesHarness, reachable_tmp_dir

SECRET = "hunter2-very-secret"


def tree_stats(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (inode, mtime_ns) of the root and everything under it, symlinks not followed."""
    out = {".": (root.lstat().st_ino, root.lstat().st_mtime_ns)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns)
    return out


@pytest.fixture
def h(tmp_path: Path) -> FilesHarness:
    return FilesHarness(tmp_path / "params")


async def test_layout_is_kubernetes_atomic_writer(h: FilesHarness) -> None:
    await h.publish(
        parameter("/app/db/url", "pg://db"),
        parameter("/app/token", "t0k\n", key="token"),
        first=True,
    )
    data = os.readlink(h.dir / "..data")
    assert SET_NAME.fullmatch(data) and h.sets() == [data]
    assert os.readlink(h.dir / "db") == "..data/db"
    assert os.readlink(h.dir / "token") == "..data/token"
    assert sorted(os.listdir(h.dir)) == sorted(["..data", data, "db", "token"])
    # Exact bytes, no newline added (nor removed).
    assert (h.dir / "db" / "url").read_bytes() == b"pg://db"
    assert (h.dir / "token").read_bytes() == b"t0k\n"
    assert (h.dir / "..data" / "db" / "url").read_bytes() == b"pg://db"


async def test_values_are_written_as_utf8_bytes(h: FilesHarness) -> None:
    await h.publish(parameter("/app/u", "päss ✓ \x00 \r\n end"), first=True)
    assert (h.dir / "u").read_bytes() == "päss ✓ \x00 \r\n end".encode()


async def test_default_modes_and_created_dir(h: FilesHarness) -> None:
    await h.publish(parameter("/app/db/url", "x"), first=True)
    data = h.dir / os.readlink(h.dir / "..data")
    assert stat.S_IMODE((data / "db" / "url").stat().st_mode) == 0o400
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "db").stat().st_mode) == 0o700
    assert stat.S_IMODE(h.dir.stat().st_mode) == 0o700


async def test_configured_modes_apply_to_every_file_and_directory(tmp_path: Path) -> None:
    h = FilesHarness(tmp_path / "p", mode="0440", dir_mode="0750")
    await h.publish(parameter("/app/a/b/c", "1"), parameter("/app/top", "2"), first=True)
    data = h.dir / os.readlink(h.dir / "..data")
    for path in [data, data / "a", data / "a" / "b", h.dir]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o750, path
    for path in [data / "a" / "b" / "c", data / "top"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o440, path


@pytest.fixture
def world_traversable_dir() -> Iterator[Path]:
    with reachable_tmp_dir("ssm-sidecar-owner-") as path:
        yield path


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root (CI runs as root)")
async def test_owner_and_group_set_and_the_app_user_can_read(world_traversable_dir: Path) -> None:
    uid, gid = 12345, 23456
    h = FilesHarness(
        world_traversable_dir / "params", uid=uid, gid=gid, mode="0400", dir_mode="0500"
    )
    await h.publish(parameter("/app/db/url", SECRET), parameter("/app/x", "y"), first=True)
    data = h.dir / os.readlink(h.dir / "..data")
    for path in [data, data / "db", data / "db" / "url", data / "x"]:
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (uid, gid), path
    # files.dir stays the agent's (its owner could swap ..data); the app's uid may only search it.
    st = os.stat(h.dir)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), gid, 0o511)
    assert stat.S_IMODE(os.stat(data / "db").st_mode) == 0o500
    assert stat.S_IMODE(os.stat(data / "db" / "url").st_mode) == 0o400
    # The application's user reads through the top-level symlink; another user cannot.
    read = ["/bin/cat"]
    target = str(h.dir / "db" / "url")
    ok = subprocess.run([*read, target], user=uid, group=gid, capture_output=True, check=False)
    assert ok.returncode == 0 and ok.stdout.decode() == SECRET
    other = subprocess.run([*read, target], user=uid + 1, group=gid + 1, capture_output=True)
    assert other.returncode != 0 and b"Permission denied" in other.stderr
    # A second set (0500 dirs) replaces the first, which is removed despite its modes.
    await h.publish(parameter("/app/db/url", "new"), parameter("/app/x", "y"))
    assert len(h.sets()) == 1 and (h.dir / "db" / "url").read_bytes() == b"new"


async def test_publish_without_change_touches_nothing(h: FilesHarness) -> None:
    p = parameter("/app/db/url", "x")
    await h.publish(p, parameter("/app/k", "v"), first=True)
    before = tree_stats(h.dir)
    for _ in range(5):
        change = await h.publish(p, parameter("/app/k", "v"))
        assert not change
    assert tree_stats(h.dir) == before


async def test_new_version_with_identical_bytes_is_not_rewritten(h: FilesHarness) -> None:
    await h.publish(parameter("/app/k", "v", version=1), first=True)
    before = tree_stats(h.dir)
    change = await h.publish(parameter("/app/k", "v", version=2))
    assert change.updated
    assert tree_stats(h.dir) == before


async def test_a_change_writes_a_new_set_and_removes_the_old_one(h: FilesHarness) -> None:
    await h.publish(parameter("/app/db/url", "one"), parameter("/app/db/pw", "p"), first=True)
    old_set = h.sets()[0]
    old_link_inode = (h.dir / "db").lstat().st_ino
    await h.publish(parameter("/app/db/url", "two", version=2), parameter("/app/db/pw", "p"))
    assert h.sets() != [old_set] and len(h.sets()) == 1
    assert (h.dir / "db" / "url").read_bytes() == b"two"
    # Top-level symlinks that are still right are left alone.
    assert (h.dir / "db").lstat().st_ino == old_link_inode


async def test_removed_parameters_disappear_with_their_links(h: FilesHarness) -> None:
    await h.publish(
        parameter("/app/db/url", "u"),
        parameter("/app/db/pw", "p"),
        parameter("/app/solo", "s"),
        first=True,
    )
    await h.publish(parameter("/app/db/url", "u"))
    assert not os.path.lexists(h.dir / "solo")
    assert not (h.dir / "db" / "pw").exists()
    assert (h.dir / "db" / "url").read_bytes() == b"u"
    assert sorted(os.listdir(h.dir)) == sorted(["..data", h.sets()[0], "db"])


async def test_first_publish_rewrites_even_without_change(h: FilesHarness) -> None:
    await h.publish(parameter("/app/k", "v"), first=True)
    first_set = h.sets()
    restarted = FilesHarness(h.dir)
    await restarted.publish(parameter("/app/k", "v"), first=True)
    assert restarted.sets() != first_set and len(restarted.sets()) == 1


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("../escape", "'..' path segment"),
        ("/etc/passwd", "absolute path"),
        ("a//b", "empty path segment"),
        ("a/./b", "'.' path segment"),
        ("..data", "reserved"),
        ("..2020_01_01_00_00_00.000000000/x", "reserved"),
        ("nul\x00byte", "NUL"),
        ("", "empty"),
        ("a/", "empty path segment"),
        ("x" * 256, "longer than 255 bytes"),
    ],
)
async def test_unsafe_key_is_logged_counted_and_the_rest_written(
    h: FilesHarness, key: str, reason: str
) -> None:
    with structlog.testing.capture_logs() as logs:
        await h.publish(
            parameter("/app/bad", SECRET, key=key), parameter("/app/good", "g"), first=True
        )
    assert (h.dir / "good").read_bytes() == b"g"
    assert h.errors("path") == 1
    skipped = [e for e in logs if e["event"] == "file_skipped"]
    assert len(skipped) == 1 and skipped[0]["entry"] == "parameter /app/bad"
    assert reason in skipped[0]["reason"]
    assert SECRET not in repr(logs) and SECRET not in repr(h.output.problems)
    assert os.listdir(h.dir.parent) == ["params"]


async def test_file_versus_directory_clash_keeps_what_was_there(h: FilesHarness) -> None:
    await h.publish(parameter("/app/a", "file-a"), first=True)
    with structlog.testing.capture_logs() as logs:
        await h.publish(parameter("/app/a", "file-a"), parameter("/app/a/b", "nested"))
    assert (h.dir / "a").read_bytes() == b"file-a"
    assert h.errors("path") == 1
    (skipped,) = [e for e in logs if e["event"] == "file_skipped"]
    assert skipped["entry"] == "parameter /app/a/b" and "parameter /app/a" in skipped["reason"]


async def test_file_versus_directory_clash_on_first_write_keeps_the_directory_side(
    h: FilesHarness,
) -> None:
    # Sorted keys: "a" is accepted first, so "a/b" is the one refused; deterministic either way.
    await h.publish(parameter("/app/a/b", "nested"), parameter("/app/a", "file-a"), first=True)
    assert (h.dir / "a").is_file() and h.errors("path") == 1


async def test_bundle_and_template_paths_win_over_parameter_keys(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("T")
    h = FilesHarness(
        tmp_path / "p",
        bundle=[{"path": "app.env", "prefix": "/app"}],
        template=[{"source": tmp_path / "t.j2", "path": "conf/app.conf"}],
    )
    await h.publish(
        parameter("/app/app.env", "param"),
        parameter("/app/conf", "param"),
        parameter("/app/k", "v"),
        first=True,
    )
    assert (h.dir / "app.env").read_bytes().startswith(b"APP_ENV=")
    assert (h.dir / "conf" / "app.conf").read_bytes() == b"T"
    assert h.errors("path") == 2


@pytest.mark.parametrize("key", ["../../../x", "/abs", "..data", "a/../../b"])
async def test_unsafe_bundle_and_template_paths_are_refused(tmp_path: Path, key: str) -> None:
    (tmp_path / "t.j2").write_text("T")
    h = FilesHarness(
        tmp_path / "root" / "p",
        bundle=[{"path": key, "prefix": "/"}],
        template=[{"source": tmp_path / "t.j2", "path": key}],
    )
    await h.publish(parameter("/app/k", "v"), first=True)
    assert h.errors("path") == 2
    assert (h.dir / "k").read_bytes() == b"v"
    assert os.listdir(tmp_path / "root") == ["p"]
    assert sorted(os.listdir(h.dir)) == sorted(["..data", h.sets()[0], "k"])


async def test_bundles_are_written_in_the_same_set(tmp_path: Path) -> None:
    h = FilesHarness(
        tmp_path / "p",
        bundle=[
            {"path": "db.env", "prefix": "/app/db"},
            {"path": "all.json", "format": "json", "prefix": "/"},
        ],
    )
    await h.publish(
        parameter("/app/db/url", 'pg://"x"'), parameter("/app/db/password", "p$w"), first=True
    )
    assert (h.dir / "db.env").read_text() == 'DB_PASSWORD="p$w"\nDB_URL="pg://\\"x\\""\n'
    assert (h.dir / "all.json").read_text().startswith('{\n  "DB_PASSWORD": "p$w",')
    assert os.readlink(h.dir / "db.env") == "..data/db.env"


async def test_bundle_clash_keeps_the_previous_bundle_and_writes_the_rest(tmp_path: Path) -> None:
    h = FilesHarness(tmp_path / "p", bundle=[{"path": "app.env", "prefix": "/app"}])
    await h.publish(parameter("/app/db-url", "one"), first=True)
    before = (h.dir / "app.env").read_bytes()
    with structlog.testing.capture_logs() as logs:
        await h.publish(
            parameter("/app/db-url", "two", version=2), parameter("/app/db_url", SECRET)
        )
    assert (h.dir / "app.env").read_bytes() == before
    assert (h.dir / "db-url").read_bytes() == b"two"
    assert h.errors("bundle") == 1
    (failed,) = [e for e in logs if e["event"] == "bundle_failed"]
    assert "'db-url'" in failed["reason"] and "'db_url'" in failed["reason"] and failed["kept"]
    assert SECRET not in repr(logs)


async def test_failing_template_keeps_previous_output_and_is_counted(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text('url={{ params["db/url"] }} flag={{ params.flag }}\n')
    h = FilesHarness(tmp_path / "p", template=[{"source": tmp_path / "t.j2", "path": "app.conf"}])
    await h.publish(parameter("/app/db/url", "one"), parameter("/app/flag", "on"), first=True)
    assert (h.dir / "app.conf").read_bytes() == b"url=one flag=on\n"
    with structlog.testing.capture_logs() as logs:
        await h.publish(parameter("/app/db/url", SECRET, version=2))
    assert (h.dir / "app.conf").read_bytes() == b"url=one flag=on\n"
    assert (h.dir / "db" / "url").read_bytes() == SECRET.encode()
    assert not os.path.lexists(h.dir / "flag")
    count = h.metrics.registry.get_sample_value(
        "ssm_sidecar_template_errors_total", {"template": "app.conf"}
    )
    assert count == 1
    (failed,) = [e for e in logs if e["event"] == "template_failed"]
    assert failed["template"] == "app.conf" and failed["kept"] is True
    assert failed["reason"] == "UndefinedError at line 1: undefined name, attribute or key"
    assert SECRET not in repr(logs)
    # Fixed: the next change renders it again.
    await h.publish(parameter("/app/db/url", "three", version=3), parameter("/app/flag", "off"))
    assert (h.dir / "app.conf").read_bytes() == b"url=three flag=off\n"


async def test_failing_template_keeps_the_output_an_earlier_process_wrote(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("{{ params.flag }}")
    tpl = [{"source": tmp_path / "t.j2", "path": "flag.txt"}]
    await FilesHarness(tmp_path / "p", template=tpl).publish(
        parameter("/app/flag", "on"), first=True
    )
    restarted = FilesHarness(tmp_path / "p", template=tpl)
    await restarted.publish(parameter("/app/other", "x"), first=True)
    assert (restarted.dir / "flag.txt").read_bytes() == b"on"


async def test_failing_template_without_previous_output_writes_the_rest(tmp_path: Path) -> None:
    h = FilesHarness(
        tmp_path / "p", template=[{"source": tmp_path / "absent.j2", "path": "a.conf"}]
    )
    await h.publish(parameter("/app/k", "v"), first=True)
    assert not os.path.lexists(h.dir / "a.conf")
    assert (h.dir / "k").read_bytes() == b"v"
    assert any("template a.conf" in p for p in h.output.problems)


async def test_a_failed_swap_keeps_the_previous_set_and_leaves_no_debris(h: FilesHarness) -> None:
    await h.publish(parameter("/app/k", "one"), first=True)
    good = h.sets()
    (h.dir / "..data_tmp").mkdir()  # in the way of the swap: a real fault, no mocks
    with structlog.testing.capture_logs() as logs, pytest.raises(NotDelivered):
        await h.publish(parameter("/app/k", "two", version=2))
    assert (h.dir / "k").read_bytes() == b"one"
    assert h.sets() == good
    assert h.errors("write") == 1
    assert any(e["event"] == "files_write_failed" for e in logs)
    assert h.output.problems and "set not written" in h.output.problems[-1]
    (h.dir / "..data_tmp").rmdir()
    await h.publish(parameter("/app/k", "three", version=3))
    assert (h.dir / "k").read_bytes() == b"three"


async def test_an_unwritable_dir_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    h = FilesHarness(tmp_path / "file" / "params")
    with pytest.raises(NotDelivered):  # the chain holds the tellers back and retries
        await h.publish(parameter("/app/k", "v"), first=True)
    assert h.errors("write") == 1
    assert "set not written" in h.output.problems[0]
    assert not (tmp_path / "file").is_dir()


async def test_a_foreign_entry_blocking_a_link_is_kept_and_reported(h: FilesHarness) -> None:
    h.dir.mkdir()
    (h.dir / "k").write_text("someone else's file")
    await h.publish(parameter("/app/k", "v"), parameter("/app/other", "o"), first=True)
    assert (h.dir / "k").read_text() == "someone else's file"
    assert (h.dir / "..data" / "k").read_bytes() == b"v"
    assert (h.dir / "other").read_bytes() == b"o"
    assert h.errors("path") == 1


async def test_debris_of_a_crash_is_cleaned_and_foreign_dot_dot_names_are_not(
    h: FilesHarness,
) -> None:
    h.dir.mkdir()
    stale = h.dir / "..2020_01_01_00_00_00.000000001"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "f").write_text("old")
    (stale / "sub").chmod(0o500)
    os.symlink("..2020_01_01_00_00_00.000000001", h.dir / "..data_tmp")
    (h.dir / "..keep-me").mkdir()
    await h.publish(parameter("/app/k", "v"), first=True)
    assert not stale.exists() and not os.path.lexists(h.dir / "..data_tmp")
    assert (h.dir / "..keep-me").is_dir()
