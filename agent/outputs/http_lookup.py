"""Find the parameter a request asks for: in the snapshot, else on demand, else a clear 404."""

from __future__ import annotations

from agent.outputs.http_common import ApiError, HttpContext
from agent.snapshot import Parameter, Snapshot
from agent.sources.base import SourceError

OUTSIDE_SET = (
    "is outside the agent's configured set "
    "(add it to [[parameters]] or its prefix to http.on_demand_prefixes)"
)


def not_found(message: str) -> ApiError:
    return ApiError(404, "ParameterNotFound", message)


def find_served(snapshot: Snapshot, name: str) -> Parameter | None:
    """By name; an ARN finds the parameter it names; `foo` also finds `/foo` and back."""
    if name.startswith("arn:"):
        _, sep, tail = name.partition(":parameter/")
        if not sep:
            return None
        for candidate in ("/" + tail, tail):
            p = snapshot.get(candidate)
            if p is not None and (not p.arn or p.arn == name):
                return p
        return None
    p = snapshot.get(name)
    if p is None:
        p = snapshot.get(name[1:] if name.startswith("/") else "/" + name)
    return p


def matches_selector(p: Parameter, selector: str | None) -> bool:
    """True when the served parameter is what `selector` (":3" or ":label") asks for."""
    if selector is None or selector == p.selector:
        return True
    tail = selector[1:]
    return tail.isdigit() and int(tail) == p.version


def served_now(ctx: HttpContext, name: str, selector: str | None) -> Parameter | None:
    """The snapshot's parameter for `name` + `selector`, if it holds it: the fast path of every
    read, without the cost of awaiting `lookup`."""
    served = find_served(ctx.state.snapshot, name)
    if served is not None and matches_selector(served, selector):
        return served
    return None


async def lookup(ctx: HttpContext, name: str, selector: str | None) -> Parameter:
    """The parameter for `name` + `selector`, or ApiError 404 (or 502 when on-demand fails)."""
    served = find_served(ctx.state.snapshot, name)
    if served is not None and matches_selector(served, selector):
        return served
    requested = name + (selector or "")
    if ctx.on_demand_covers(name):
        try:
            fetched = await ctx.on_demand(requested)
        except SourceError as exc:
            raise ApiError(
                502, "SourceUnavailable", f"fetching {requested} failed: {exc}"
            ) from None
        if fetched is None:
            raise not_found(f"{requested} was not found in the parameter source")
        return fetched
    if served is not None:
        raise not_found(
            f"{requested}: the agent serves {served.name} at version {served.version}"
            + (f" (selector {served.selector})" if served.selector else "")
            + f"; {selector} is not held (pin it in [[parameters]] or list its prefix in"
            " http.on_demand_prefixes)"
        )
    raise not_found(f"{requested} {OUTSIDE_SET}")
