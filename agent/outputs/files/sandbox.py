"""The jinja sandbox with limits: a render ends by its deadline, when cancelled, or when a value or
the output would grow past the caps; it can never run for hours or take gigabytes.

jinja's immutable sandbox already refuses unsafe attributes and mutation. It does not bound
work or size, so these are checked here:

- time (and the cancel flag) at every step of every `{% for %}` loop, every call, filter and
  intercepted operator, every `~` and every chunk of output;
- size before an operation that can multiply its input in one step (`*`, `**`, `+`, `%`, `~`,
  `str.format`, `join`, `center`, `indent`, `replace`, `ljust`, ...), and after every call,
  filter and operator: a string at most `max_bytes` characters, a list at most MAX_ITEMS items,
  an integer at most MAX_INT_BITS bits. So no single step can build a huge value, and no loop
  can go on past the deadline.

Loops and `~` reach these checks through a rewrite of the parsed template (`_Guard`): each
loop's iterable is wrapped in `guard_iter`, each `~` becomes `guard_concat`. Everything else goes
through the sandbox's own hooks (`call`, `call_binop`, `concat`, `finalize`, the filters).
"""

from __future__ import annotations

import functools
import itertools
import re
import string
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

from agent.durations import format_duration

MAX_ITEMS = 100_000  # jinja's own cap on range()
MAX_INT_BITS = 65_536
_MAX_WIDTH_DIGITS = 9
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_SEQUENCES = (str, bytes, list, tuple)
_GROWING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """`files.template_timeout` and `files.template_max_bytes`."""

    timeout: float = 2.0
    max_bytes: int = 1 << 20


class RenderLimitError(Exception):
    """A limit stopped the render. The message is the agent's own: it never holds a value."""


class Budget:
    """The limits of one render: its deadline, its caps, and the renderer's cancel flag."""

    def __init__(self, limits: RenderLimits, cancelled: threading.Event) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout
        self.cancelled = cancelled

    def tick(self) -> None:
        if self.cancelled.is_set():
            raise RenderLimitError("cancelled: the agent is stopping")
        if time.monotonic() > self.deadline:
            took = format_duration(self.limits.timeout)
            raise RenderLimitError(f"took longer than files.template_timeout ({took})")

    def text(self, length: int) -> None:
        """A string of `length` characters is about to be made."""
        if length > self.limits.max_bytes:
            raise RenderLimitError(
                f"a value would be larger than files.template_max_bytes ({self.limits.max_bytes})"
            )

    def items(self, count: int) -> None:
        if count > MAX_ITEMS:
            raise RenderLimitError(f"a list would hold more than {MAX_ITEMS} items")

    def bits(self, count: int) -> None:
        if count > MAX_INT_BITS:
            raise RenderLimitError(f"a number would be larger than {MAX_INT_BITS} bits")

    def width(self, digits: str) -> None:
        """A field width or precision in a format string."""
        if digits == "*" or len(digits) > _MAX_WIDTH_DIGITS:
            self.text(self.limits.max_bytes + 1)
        self.text(int(digits))

    def check(self, value: Any) -> Any:
        """`value` after a step: within the caps, or RenderLimitError."""
        if isinstance(value, str | bytes):
            self.text(len(value))
        elif isinstance(value, bool):
            pass
        elif isinstance(value, int):
            self.bits(value.bit_length())
        elif isinstance(value, list | tuple | dict | set | frozenset):
            self.items(len(value))
        return value

    def as_text(self, value: Any) -> None:
        """`str(value)` is about to be made: refuse when it would pass the cap."""
        limit = self.limits.max_bytes
        if text_weight(value, limit) > limit:
            self.text(limit + 1)


def text_weight(value: Any, limit: int) -> int:
    """About len(str(value)) (at least that much for containers), counted only up to `limit`."""
    total = 0
    todo: list[Any] = [value]
    while todo and total <= limit:
        item = todo.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 3
        elif isinstance(item, bool) or not isinstance(item, int | Collection | Mapping):
            total += 24
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, range):
            total += 24
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            todo.extend(itertools.islice(itertools.chain.from_iterable(item.items()), limit))
        else:
            total += 2 + 2 * len(item)
            todo.extend(itertools.islice(item, limit))
    return total


def _printf_widths(budget: Budget, fmt: str | bytes) -> None:
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    for match in _PRINTF.finditer(text):
        for digits in match.groups():
            if digits is not None:
                budget.width(digits)


def _format_widths(budget: Budget, fmt: str) -> None:
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error itself
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            budget.width("*")  # a width taken from an argument: unknown in advance
        for digits in re.findall(r"\d+", spec or ""):
            budget.width(digits)


def _binop_before(budget: Budget, operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, _SEQUENCES) and isinstance(n, int):
                _sized(budget, seq, len(seq) * max(n, 0))
                return
        if isinstance(left, int) and isinstance(right, int):
            budget.bits(left.bit_length() + right.bit_length())
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0:
            budget.bits(max(left.bit_length() - 1, 1) * right)
    elif operator == "+":
        if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            _sized(budget, left, len(left) + len(right))
    elif operator == "%" and isinstance(left, str | bytes):
        _printf_widths(budget, left)
        budget.as_text(right)


def _sized(budget: Budget, kind: Any, length: int) -> None:
    if isinstance(kind, str | bytes):
        budget.text(length)
    else:
        budget.items(length)


def _call_before(
    budget: Budget, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Methods of str, bytes and int that can make a large value in one step; the arguments to
    call them with (an iterator to join is read here, so that its size is known first)."""
    target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
    owner = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    if isinstance(owner, str | bytes):
        if name in _GROWING_METHODS and args and isinstance(args[0], int):
            tabs = (owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")) or 1
            budget.text(len(owner) + args[0] * (tabs if name == "expandtabs" else 1))
        elif name == "replace" and len(args) >= 2:
            count = args[2] if len(args) > 2 else -1
            budget.text(_replaced_length(owner, args[0], args[1], count))
        elif name == "join" and args:
            parts = args[0]
            if not isinstance(parts, Collection):
                parts = list(itertools.islice(parts, MAX_ITEMS + 1))
                budget.items(len(parts))
                args = (parts, *args[1:])
            budget.as_text(parts)
        elif name in ("format", "format_map") and isinstance(owner, str):
            _format_widths(budget, owner)
            budget.as_text((args, kwargs))
    elif isinstance(owner, int) and name == "to_bytes":
        length = args[0] if args else kwargs.get("length", 1)
        if isinstance(length, int):
            budget.text(length)
    return args


def _replaced_length(text: Any, old: Any, new: Any, count: Any) -> int:
    text, old, new = str(text), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(len(new) - len(old), 0)


# --- filters ----------------------------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _filter_before(
    budget: Budget, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Filters that can make a large value in one step; `args` start with the filtered value."""
    value = args[0] if args else None
    if name == "center":
        width = _arg(args, kwargs, 1, "width")
        if isinstance(width, int):
            budget.text(len(str(value)) + width)
    elif name == "indent":
        width = _arg(args, kwargs, 1, "width")
        pad = width if isinstance(width, int) else len(str(width or ""))
        text = str(value)
        budget.text(len(text) + pad * (text.count("\n") + 1))
    elif name == "replace":
        count = _arg(args, kwargs, 3, "count")
        budget.text(
            _replaced_length(
                value, _arg(args, kwargs, 1, "old"), _arg(args, kwargs, 2, "new"), count
            )
        )
    elif name == "format" and isinstance(value, str):
        _printf_widths(budget, value)
        budget.as_text((args[1:], kwargs))
    elif name in ("batch", "slice"):
        count = _arg(args, kwargs, 1, "linecount" if name == "batch" else "slices")
        if isinstance(count, int):
            budget.items(count)
    elif name == "sum":
        start = _arg(args, kwargs, 2, "start")
        if start is not None and not isinstance(start, int | float):
            raise RenderLimitError("sum adds numbers only here")
    elif name in ("join", "string", "pprint", "tojson", "urlencode", "xmlattr", "list"):
        budget.as_text(value)


def _guard_filter(
    env: GuardedEnvironment, name: str, func: Callable[..., Any]
) -> Callable[..., Any]:
    # jinja passes a context, eval context or environment first to filters marked so.
    skip = 1 if hasattr(func, "jinja_pass_arg") else 0

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = env.budget
        budget.tick()
        if name in ("join", "list", "sum") and len(args) > skip:
            # These read their input whole anyway: read it here, so its size is known first.
            value = args[skip]
            if isinstance(value, Iterable) and not isinstance(value, Collection):
                value = list(itertools.islice(value, MAX_ITEMS + 1))
                args = (*args[:skip], value, *args[skip + 1 :])
            budget.check(value)
        _filter_before(budget, name, args[skip:], kwargs)
        return budget.check(func(*args, **kwargs))

    return guarded


# --- the environment ------------------------------------------------------------------------


class _Namespace(Namespace):
    """namespace() whose repr cannot print a huge value by accident."""

    def __repr__(self) -> str:
        return "<namespace>"


class _Guard(NodeTransformer):
    """Routes every loop and every `~` through the environment's checks."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        iterable = node.iter
        assert isinstance(iterable, nodes.Expr)
        node.iter = _env_call("guard_iter", [iterable], iterable.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _env_call("guard_concat", list(node.nodes), node.lineno)


def _env_call(method: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(method), args, [], None, None, lineno=lineno)


class _IdleBudget(Budget):
    """Between renders (and while compiling): the caps apply, time does not run out."""

    def __init__(self, limits: RenderLimits) -> None:
        super().__init__(limits, threading.Event())
        self.deadline = float("inf")


class GuardedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, limits: RenderLimits, **options: Any) -> None:
        # No constant folding: a filter or operator on literals runs at render time, checked.
        super().__init__(optimized=False, finalize=self._finalize, **options)
        self.budget: Budget = _IdleBudget(limits)
        self.globals.pop("lipsum", None)
        self.globals["namespace"] = _Namespace
        self.filters = {name: _guard_filter(self, name, f) for name, f in self.filters.items()}

    def start_render(self, cancelled: threading.Event) -> Budget:
        self.budget = Budget(self.budget.limits, cancelled)
        return self.budget

    def end_render(self) -> None:
        self.budget = _IdleBudget(self.budget.limits)

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        _Guard().visit(source)
        source.set_environment(self)
        return super()._generate(source, name, filename, defer_init)

    # --- hooks the compiled template calls ----------------------------------------------------

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = self.budget
        budget.tick()
        args = _call_before(budget, obj, args, kwargs)
        return budget.check(super().call(context, obj, *args, **kwargs))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = self.budget
        budget.tick()
        _binop_before(budget, operator, left, right)
        return budget.check(super().call_binop(context, operator, left, right))

    def concat(self, parts: Iterable[str]) -> str:
        """Joins the output of a macro, a block `set`, a `call` or `filter` block."""
        parts = list(parts)
        self.budget.tick()
        self.budget.text(sum(len(p) for p in parts))
        return "".join(parts)

    def guard_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        budget = self.budget
        for item in iterable:
            budget.tick()
            yield item

    def guard_concat(self, *values: Any) -> str:
        budget = self.budget
        budget.tick()
        for value in values:
            budget.as_text(value)
        parts = [str(v) for v in values]
        budget.text(sum(len(p) for p in parts))
        return "".join(parts)

    def _finalize(self, value: Any) -> Any:
        """Each `{{ ... }}` before it becomes text."""
        budget = self.budget
        budget.tick()
        budget.as_text(value)
        return value
