"""RemovalGuard: a removal bigger than the allowed share waits for a second cycle to confirm it."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.removals import RemovalGuard
from agent.snapshot import Parameter

T = datetime(2026, 1, 1, tzinfo=UTC)


def params(*names: str) -> dict[str, Parameter]:
    return {n: Parameter(n, n.strip("/"), "String", "v", 1, T) for n in names}


ALL = params("/a", "/b", "/c", "/d", "/e")


def test_nothing_absent_nothing_held() -> None:
    guard = RemovalGuard()
    decision = guard.check(ALL, ALL, 0.5)
    assert decision.held == () and decision.confirmed == ()


def test_a_removal_within_the_share_goes_through() -> None:
    guard = RemovalGuard()
    decision = guard.check(ALL, params("/a", "/b", "/c"), 0.5)  # 2 of 5
    assert decision.held == ()


def test_a_big_removal_is_held_then_confirmed_by_the_next_cycle() -> None:
    guard = RemovalGuard()
    short = params("/e")
    first = guard.check(ALL, short, 0.5)
    assert first.held == ("/a", "/b", "/c", "/d") and first.confirmed == ()
    second = guard.check(ALL, short, 0.5)
    assert second.held == () and second.confirmed == ("/a", "/b", "/c", "/d")


def test_a_listing_back_to_whole_clears_what_was_held() -> None:
    guard = RemovalGuard()
    guard.check(ALL, params("/e"), 0.5)
    assert guard.check(ALL, ALL, 0.5).held == ()
    # Short again later: a fresh hold, not a confirmation of the old one.
    assert guard.check(ALL, params("/e"), 0.5).held == ("/a", "/b", "/c", "/d")


def test_new_absentees_restart_the_confirmation() -> None:
    guard = RemovalGuard()
    guard.check(ALL, params("/d", "/e"), 0.5)  # /a /b /c held
    again = guard.check(ALL, params("/e"), 0.5)  # /d is new: hold all four, confirm next time
    assert again.held == ("/a", "/b", "/c", "/d")
    assert guard.check(ALL, params("/e"), 0.5).confirmed == ("/a", "/b", "/c", "/d")


def test_a_subset_of_what_was_held_is_confirmed() -> None:
    guard = RemovalGuard()
    guard.check(ALL, params("/e"), 0.5)
    decision = guard.check(ALL, params("/a", "/e"), 0.5)  # /a came back, /b /c /d still gone
    assert decision.held == () and decision.confirmed == ("/b", "/c", "/d")


def test_share_1_never_holds() -> None:
    assert RemovalGuard().check(ALL, {}, 1.0).held == ()


def test_the_first_load_and_an_empty_set_are_never_held() -> None:
    guard = RemovalGuard()
    assert guard.check({}, ALL, 0.5).held == ()
    assert guard.check(params("/a"), params("/a"), 0.5).held == ()


def test_an_expected_removal_after_a_config_change_goes_through_once() -> None:
    guard = RemovalGuard()
    guard.expect_removals()
    assert guard.check(ALL, params("/e"), 0.5).held == ()
    assert guard.check(ALL, params("/e"), 0.5).held == ("/a", "/b", "/c", "/d")
