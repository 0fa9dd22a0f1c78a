"""`ssm-sidecar get`'s client side: where it connects, and its messages when it cannot."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from agent.cli import main
from agent.get_command import GetError, Target, fetch_value, target_for, url_for_listen
from tests.support.builders import agent_config, parameter, snapshot, write_config
from tests.support.http_server import start_api
from tests.support.moto import free_port


def test_listen_becomes_a_url() -> None:
    assert url_for_listen("127.0.0.1:2773") == "http://127.0.0.1:2773"
    assert url_for_listen("[::1]:2773") == "http://[::1]:2773"
    assert url_for_listen("unix:/run/a.sock") == "unix:/run/a.sock"


def test_defaults_come_from_the_config(tmp_path: Path) -> None:
    http = {"listen": "unix:/run/x.sock", "token_file": "tok"}
    config = write_config(tmp_path / "config.toml", agent_config(http=http))
    target = target_for(None, None, str(config))
    assert target == Target("unix:/run/x.sock", tmp_path / "tok")


def test_flags_win_and_need_no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSM_SIDECAR_CONFIG", str(tmp_path / "absent.toml"))
    target = target_for("http://127.0.0.1:1", str(tmp_path / "t"), None)
    assert target == Target("http://127.0.0.1:1", tmp_path / "t")


def test_without_any_config_the_builtin_defaults_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSM_SIDECAR_CONFIG", raising=False)
    if Path("/etc/ssm-sidecar/config.toml").exists():
        pytest.skip("this machine has a real config")
    target = target_for(None, None, None)
    assert target == Target("http://127.0.0.1:2773", Path("/run/ssm-sidecar/token"))


def test_a_bad_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "config.toml", agent_config(http={"listen": "nowhere"}))
    assert main(["get", "/app/x", "-c", str(config)]) == 2
    assert "http.listen" in capsys.readouterr().err


async def test_no_agent_listening_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t")
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GetError, match=f"no agent answering at {url}"):
        await fetch_value("/app/x", Target(url, tmp_path / "token"))
    with pytest.raises(GetError, match="no agent answering at unix:"):
        await fetch_value("/app/x", Target(f"unix:{tmp_path}/none.sock", tmp_path / "token"))


async def test_a_missing_token_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GetError, match="cannot read the token file"):
        await fetch_value("/app/x", Target("http://127.0.0.1:1", tmp_path / "absent"))


def test_get_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "token").write_text("t")
    url = f"http://127.0.0.1:{free_port()}"
    code = main(["get", "/app/x", "--url", url, "--token-file", str(tmp_path / "token")])
    out = capsys.readouterr()
    assert code == 1
    assert out.out == ""
    assert out.err.startswith("ssm-sidecar: get: no agent answering")
    assert out.err.count("\n") == 1


async def test_fetch_over_a_unix_socket(tmp_path: Path) -> None:
    value = "line one\nline two\n"
    served = snapshot(parameter("/a/b", value))
    with tempfile.TemporaryDirectory(dir="/tmp") as short:
        listen = f"unix:{short}/a.sock"
        server, _, _, _, cfg = await start_api(tmp_path, served=served, listen=listen)
        try:
            got = await fetch_value("/a/b", target_for(cfg.listen, str(cfg.token_file), None))
            assert got == value.encode()
            with pytest.raises(GetError, match=r"/a/zzz: .*outside the agent's configured set"):
                await fetch_value("/a/zzz", Target(cfg.listen, cfg.token_file))
        finally:
            await server.stop()
