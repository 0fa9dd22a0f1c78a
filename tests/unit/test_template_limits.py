"""Templates cannot stall the agent: every render has a time limit and a size cap, checked at
every loop step, call, filter, operator and output chunk; a render can be cancelled at once.

Each hostile template here would run for hours or take gigabytes without the limits. A render
runs in a thread the test waits on with a deadline, so that a regression fails instead of hanging.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.outputs.files.templates import (
    RenderLimits,
    TemplateError,
    TemplateRenderer,
    template_context,
)
from agent.snapshot import Snapshot

LIMITS = RenderLimits(timeout=0.5, max_bytes=1 << 20)
RUNAWAY = 60.0  # a render still running after this is a hang, not a slow render


def _renderer(tmp_path: Path, text: str, limits: RenderLimits = LIMITS) -> TemplateRenderer:
    source = tmp_path / "t.j2"
    source.write_text(text, encoding="utf-8")
    return TemplateRenderer(source, limits)


def _render(renderer: TemplateRenderer) -> bytes | TemplateError:
    """The bytes or the TemplateError of one render, in a thread that must end."""
    outcome: list[bytes | TemplateError] = []

    def run() -> None:
        try:
            outcome.append(renderer.render(template_context(Snapshot())))
        except TemplateError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(RUNAWAY)
    if worker.is_alive():
        renderer.cancel()
        pytest.fail("the render did not end: no limit stopped it")
    return outcome[0]


def _error(tmp_path: Path, text: str, limits: RenderLimits = LIMITS) -> str:
    result = _render(_renderer(tmp_path, text, limits))
    assert isinstance(result, TemplateError), result[:200]
    return str(result)


TOO_SLOW = {
    "nested range loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "nested loops over a string, no call inside": (
        '{% set s = "x" * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}'
    ),
    "loops that compare only": (
        '{% set s = "ab" * 50000 %}{% for a in s %}{% for b in s %}{% if a == b %}{% endif %}'
        "{% endfor %}{% endfor %}"
    ),
    "a loop with loop.length": (
        '{% set s = "x" * 100000 %}{% for a in s %}{% for b in s %}{{ "" if loop.last }}'
        "{% endfor %}{% endfor %}"
    ),
    "a recursive macro": (
        "{% macro m(n) %}{% for i in range(10) %}{{ m(n + 1) if n < 50 }}{% endfor %}"
        "{% endmacro %}{{ m(0) }}"
    ),
}


@pytest.mark.parametrize("text", TOO_SLOW.values(), ids=TOO_SLOW.keys())
def test_a_render_that_takes_too_long_is_stopped(tmp_path: Path, text: str) -> None:
    message = _error(tmp_path, text)
    assert "took longer than files.template_timeout (500ms)" in message


TOO_BIG = {
    "a huge string product": '{{ "x" * 10**12 }}',
    "a string product with the number first": '{{ 10**12 * "x" }}',
    "a huge list product": "{{ [1] * 10**9 }}",
    "a huge power": "{{ 7 ** (10 ** 9) }}",
    "squaring in a loop": (
        "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}"
        "{% endfor %}{{ ns.n > 0 }}"
    ),
    "doubling with ~ in a loop": (
        '{% set ns = namespace(s="x") %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}'
        "{% endfor %}{{ ns.s|length }}"
    ),
    "doubling with ~ without a loop": (
        '{% set s = "x" * 1000 %}' + "{% set s = s ~ s %}" * 40 + "{{ s|length }}"
    ),
    "doubling with + without a loop": (
        '{% set s = "x" * 1000 %}' + "{% set s = s + s %}" * 40 + "{{ s|length }}"
    ),
    "doubling through a block set": (
        '{% set s = "x" * 1000 %}' + "{% set s %}{{ s }}{{ s }}{% endset %}" * 40
    ),
    "a macro that returns a lot": (
        '{% set s = "x" * 1000000 %}{% macro m() %}{% for i in range(5000) %}{{ s }}'
        "{% endfor %}{% endmacro %}{{ m()|length }}"
    ),
    "printf with a huge width": '{{ "%0999999999d" % 1 }}',
    "the format filter with a huge width": '{{ "%999999999s"|format("x") }}',
    "str.format with a huge width": '{{ "{:>999999999}".format(1) }}',
    "a huge ljust": '{{ "x".ljust(10**10) }}',
    "center": '{{ "x"|center(10**10) }}',
    "indent": '{{ ("x\\n" * 100000)|indent(100000) }}',
    "replace": '{{ ("x" * 100000)|replace("x", "y" * 100000) }}',
    "join of many big strings": '{{ (["x" * 1000000] * 5000)|join }}',
    "str.join of many big strings": '{{ "".join(["x" * 1000000] * 5000) }}',
    "to_bytes": '{{ (1).to_bytes(10**10, "big") }}',
    "batch": "{{ range(3)|batch(10**10, 0)|list }}",
    "slice": "{{ range(3)|slice(10**9)|list }}",
    "printing a list of big strings": '{{ ["x" * 1000000] * 5000 }}',
    "a list of big strings made text by ~": '{{ (["x" * 1000000] * 5000) ~ "" }}',
    "a list of big strings made text by a filter": '{{ (["x" * 1000000] * 5000)|string }}',
    "a huge output": '{% for i in range(100000) %}{{ "y" * 1000 }}{% endfor %}',
}


@pytest.mark.parametrize("text", TOO_BIG.values(), ids=TOO_BIG.keys())
def test_a_render_that_grows_too_big_is_stopped(tmp_path: Path, text: str) -> None:
    message = _error(tmp_path, text)
    assert "larger than" in message or "more than" in message, message
    assert "took longer" not in message


def test_sum_adds_numbers_only(tmp_path: Path) -> None:
    # Adding 100,000 lists one by one copies ever longer lists: hours, in one C call.
    message = _error(tmp_path, "{{ ([[1]] * 100000)|sum(start=[]) }}")
    assert message == "limit reached at line 1: sum adds numbers only here"
    assert _render(_renderer(tmp_path, "{{ [1.5, 2]|sum }}")) == b"3.5"


def test_lipsum_is_not_offered(tmp_path: Path) -> None:
    message = _error(tmp_path, "{{ lipsum(10**7) }}")
    assert message.startswith("UndefinedError at line 1")


def test_output_exactly_at_the_cap_is_written(tmp_path: Path) -> None:
    limits = RenderLimits(timeout=5.0, max_bytes=1000)
    assert _render(_renderer(tmp_path, '{{ "é" * 500 }}', limits)) == "é".encode() * 500
    message = _error(tmp_path, '{{ "é" * 500 }}!', limits)
    assert "output larger than files.template_max_bytes (1000 bytes)" in message


def test_ordinary_templates_are_untouched(tmp_path: Path) -> None:
    text = (
        "{% set ns = namespace(total=0) %}"
        "{% for i in range(10) %}{% set ns.total = ns.total + i %}{% endfor %}"
        "{{ ns.total }} {{ 'ab' ~ 'cd' }} {{ 'x' * 3 }} {{ [1, 2] + [3] }} {{ 2 ** 10 }} "
        "{{ '%05d' % 42 }} {{ '{:>4}'.format(7) }} {{ 'a b'|replace(' ', '_') }} "
        "{{ ['a', 'b']|join(',') }} {{ range(3)|sum }} {{ 'x'|center(5) }}|"
        "{% for x in 'abc' %}{{ loop.index }}{{ x }}{% if loop.last %}.{% endif %}{% endfor %}"
        "{% set block %}in{{ 'side' }}{% endset %} {{ block }}"
        "{% macro m(a) %}<{{ a }}>{% endmacro %} {{ m(1) }}"
    )
    assert _render(_renderer(tmp_path, text)) == (
        b"45 abcd xxx [1, 2, 3] 1024 00042    7 a_b a,b 3   x  |1a2b3c. inside <1>"
    )


def test_cancel_stops_a_running_render_at_once(tmp_path: Path) -> None:
    forever = RenderLimits(timeout=3600.0, max_bytes=1 << 20)
    renderer = _renderer(tmp_path, "{{ started() }}" + TOO_SLOW["nested range loops"], forever)
    started = threading.Event()
    outcome: list[bytes | TemplateError] = []

    def run() -> None:
        try:
            outcome.append(renderer.render({"started": started.set}))
        except TemplateError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert started.wait(RUNAWAY), "the render did not start"
    renderer.cancel()
    worker.join(RUNAWAY)
    assert not worker.is_alive()
    assert "cancelled: the agent is stopping" in str(outcome[0])
    # A cancelled renderer renders nothing more; another one is not affected.
    assert "cancelled" in str(_render(renderer))
    assert _render(_renderer(tmp_path, "ok", forever)) == b"ok"
