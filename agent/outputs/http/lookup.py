"""Find the parameter a request asks for: in the snapshot, else on demand, else a clear 404."""

from __future__ import annotations

from agent.outputs.http.context import ApiError, HttpContext
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
