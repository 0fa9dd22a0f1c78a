"""refresh.max_removal_share and source.region: their config errors, in `file: key: reason`."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, parse_config


def _parse(**sections: object) -> object:
    return parse_config({"parameters": [{"path": "/app"}], **sections}, "c.toml")


def test_the_default_share_is_one_half() -> None:
    assert _parse().refresh.max_removal_share == 0.5  # type: ignore[attr-defined]


@pytest.mark.parametrize("share", [-0.1, 1.5, "half"])
def test_a_share_outside_0_to_1_is_refused(share: object) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(refresh={"max_removal_share": share})
    assert str(caught.value).startswith("c.toml: refresh.max_removal_share: ")


def test_a_region_that_is_no_region_name_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(source={"region": "eu west 1"})
    assert str(caught.value).startswith("c.toml: source.region: 'eu west 1' is not a region name")
