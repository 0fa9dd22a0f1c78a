"""Find the parameter a request asks for: in the snapshot, else through the source, else a 404
that says which: not in the source, or outside the agent's configured set.

Through the source: names under http.on_demand_prefixes (`ctx.on_demand`), and another version
or label of a name the agent serves (`ctx.on_demand_version`), so `name:1` answers what SSM
answers even while the agent holds version 2. Both are cached one refresh interval.
"""

from __future__ import annotations

from agent.outputs.http.context import ApiError, HttpContext, OnDemand
from agent.results import SourceError
from agent.snapshot import Parameter, find_served, matches_selector

OUTSIDE_SET = (
    "is outside the agent's configured set "
    "(add it to [[parameters]] or its prefix to http.on_demand_prefixes)"
)


def not_found(message: str) -> ApiError:
    return ApiError(404, "ParameterNotFound", message)


def served_now(ctx: HttpContext, name: str, selector: str | None) -> Parameter | None:
    """The snapshot's parameter for `name` + `selector`, if it holds it: the fast path of every
    read, without the cost of awaiting `lookup`."""
    served = find_served(ctx.state.snapshot, name)
    if served is not None and matches_selector(served, selector):
        return served
    return None


async def _through_source(fetch: OnDemand, requested: str) -> Parameter | None:
    try:
        return await fetch(requested)
    except SourceError as exc:
        raise ApiError(502, "SourceUnavailable", f"fetching {requested} failed: {exc}") from None


def _last_error_of(ctx: HttpContext, name: str) -> str:
    for e in ctx.state.parameter_errors:
        if e.is_path:
            failed = name.startswith(e.subject.rstrip("/") + "/")
        else:
            failed = name in (e.name, e.subject)
        if failed:
            return f"; the source answered {e.code}"
    return ""


async def lookup(ctx: HttpContext, name: str, selector: str | None) -> Parameter:
    """The parameter for `name` + `selector`, or ApiError 404 (or 502 when the source fails)."""
    served = find_served(ctx.state.snapshot, name)
    if served is not None and matches_selector(served, selector):
        return served
    requested = name + (selector or "")
    if ctx.on_demand_covers(name):
        fetched = await _through_source(ctx.on_demand, requested)
        if fetched is None:
            raise not_found(f"{requested} was not found in the parameter source")
        return fetched
    if served is not None:
        held = f"the agent serves {served.name} at version {served.version}" + (
            f" (selector {served.selector})" if served.selector else ""
        )
        if ctx.on_demand_version is not None:
            fetched = await _through_source(ctx.on_demand_version, requested)
            if fetched is None:
                raise not_found(f"{requested} was not found in the parameter source ({held})")
            return fetched
        raise not_found(
            f"{requested}: {held}; {selector} is not held (pin it in [[parameters]] or list its"
            " prefix in http.on_demand_prefixes)"
        )
    where = ctx.configured(name) if ctx.configured is not None else None
    if where is not None:
        raise not_found(
            f"{requested} was not found in the parameter source (it is in the agent's "
            f"configured set, [[parameters]] {where}, but the source did not return it"
            f"{_last_error_of(ctx, name)})"
        )
    raise not_found(f"{requested} {OUTSIDE_SET}")
