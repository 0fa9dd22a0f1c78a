"""What the watcher publishes after a versions-first cycle: the records that changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.fleet.records import Record, record_of
from agent.results import ParameterError
from agent.snapshot import Parameter


def changed_records(
    params: Mapping[str, Parameter],
    errors: Sequence[ParameterError],
    published: Mapping[str, Record],
) -> list[Record]:
    """A record for each parameter new or changed since `published`, and a deletion record for
    each published one that is gone (not one that only failed to load this cycle)."""
    out: list[Record] = []
    for name, p in params.items():
        rec = record_of(p)
        if rec is None:
            continue
        old = published.get(name)
        if (
            old is None
            or old.order != rec.order
            or (old.key, old.selector, old.type) != (rec.key, rec.selector, rec.type)
            # A SecureString's ciphertext may differ between reads of one version.
            or (not rec.is_secure and old.value != rec.value)
        ):
            out.append(rec)
    for name, old in published.items():
        if old.deleted or name in params:
            continue
        if any(e.covers(old.parameter("")) for e in errors):
            continue
        out.append(old.deletion())
    return out
