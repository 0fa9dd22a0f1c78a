"""The SSM source's region resolves as the AWS SDKs do, and a missing one is a config error.

Order: `source.region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, then instance
metadata (only when nothing else answered). The instance metadata service here is a fake on
127.0.0.1 (AWS_EC2_METADATA_SERVICE_ENDPOINT): no test ever reaches a non-loopback address.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from agent.sources.region import resolve_region, resolve_source_region

AWS_VARS = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
)


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class FakeImds:
    """IMDSv2 on loopback: a token, then the availability zone; counts the requests."""

    def __init__(self, zone: str = "ap-southeast-2b") -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: str) -> None:
                owner.requests.append(f"{self.command} {self.path}")
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                self._answer("token-123")

            def do_GET(self) -> None:
                self._answer(zone)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self) -> FakeImds:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeImds]:
    with FakeImds() as fake:
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake.url)
        yield fake


def _profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    config = tmp_path / "aws-config"
    config.write_text(f"[profile team]\nregion = {region}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "team")


def test_configured_region_wins_over_everything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, imds: FakeImds
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    _profile(tmp_path, monkeypatch, "eu-west-3")
    assert resolve_region("us-west-2") == ("us-west-2", "source.region")
    assert imds.requests == []


def test_aws_region_alone_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore itself reads only AWS_DEFAULT_REGION; the SDKs and the docs use AWS_REGION."""
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert resolve_region(None) == ("eu-central-1", "AWS_REGION")


def test_aws_region_before_aws_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    assert resolve_region(None) == ("eu-central-1", "AWS_REGION")
    monkeypatch.delenv("AWS_REGION")
    assert resolve_region(None) == ("us-east-2", "AWS_DEFAULT_REGION")


def test_profile_region_before_instance_metadata(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, imds: FakeImds
) -> None:
    _profile(tmp_path, monkeypatch, "sa-east-1")
    assert resolve_region(None) == ("sa-east-1", "profile team")
    assert imds.requests == [], "instance metadata asked although the profile had a region"


def test_instance_metadata_last(imds: FakeImds) -> None:
    assert resolve_region(None) == ("ap-southeast-2", "instance metadata")
    assert any(r.startswith("GET ") and "availability-zone" in r for r in imds.requests)


def test_nothing_anywhere_is_none() -> None:
    assert resolve_region(None) is None


def test_an_unknown_profile_is_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nope")
    assert resolve_region(None) is None


def _ssm_config(tmp_path: Path, region: str | None = None) -> object:
    source: dict[str, object] = {"type": "ssm"}
    if region is not None:
        source["region"] = region
    return parse_config(
        {"source": source, "parameters": [{"path": "/app"}]}, str(tmp_path / "config.toml")
    )


def test_no_region_is_a_config_error_naming_source_region(tmp_path: Path) -> None:
    cfg = _ssm_config(tmp_path)
    with pytest.raises(ConfigError) as caught:
        resolve_source_region(cfg)  # type: ignore[arg-type]
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'config.toml'}: source.region: ")
    assert "\n" not in text
    for way in ("AWS_REGION", "AWS_DEFAULT_REGION", "profile"):
        assert way in text


def test_resolved_region_is_filled_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    cfg = resolve_source_region(_ssm_config(tmp_path))  # type: ignore[arg-type]
    assert cfg.source.region == "eu-north-1"


def test_a_file_source_needs_no_region(tmp_path: Path) -> None:
    cfg = parse_config(
        {"source": {"type": "file", "path": "v.toml"}, "parameters": [{"path": "/app"}]},
        str(tmp_path / "config.toml"),
    )
    assert resolve_source_region(cfg) is cfg


def test_a_malformed_region_from_the_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu west 1")
    with pytest.raises(ConfigError) as caught:
        resolve_source_region(_ssm_config(tmp_path))  # type: ignore[arg-type]
    assert "source.region" in str(caught.value) and "AWS_REGION" in str(caught.value)
