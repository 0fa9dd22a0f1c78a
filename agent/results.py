"""The result and error types that several layers share.

Sources raise and return them, the refresher combines them, outputs and the HTTP API report
them; keeping them here, below all of those, means no layer imports one above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.snapshot import Change, Parameter, Secret


class SourceError(Exception):
    """The source as a whole could not be read this cycle (network, throttling, 5xx).

    The message never holds a parameter value.
    """

    def __init__(self, message: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled


@dataclass(frozen=True, slots=True)
class ParameterError:
    """One name (or one whole path) that failed while the others loaded.

    `subject` is what was asked for (a name with its selector, an ARN, a path); `name` is the
    name without a selector when the two differ. `secret` marks a Secrets Manager secret (or
    prefix); `keep` is False for a secret that is gone (deleted), whose last value must not stay.
    """

    subject: str
    code: str
    message: str
    required: bool = True
    is_path: bool = False
    name: str | None = None
    secret: bool = False
    keep: bool = True

    def covers(self, p: Parameter | Secret) -> bool:
        """Whether `p` is (one of) what failed, so that its last good value should stay."""
        if isinstance(p, Secret) or self.secret:
            return self._covers_secret(p) if isinstance(p, Secret) and self.secret else False
        if self.is_path:
            prefix = self.subject.rstrip("/") + "/"
            return prefix == "/" or p.name.startswith(prefix)
        base = self.name or self.subject
        return base in (p.name, p.arn)

    def _covers_secret(self, s: Secret) -> bool:
        if not self.keep:
            return False
        if self.is_path:
            return s.selector is None and s.name.startswith(self.subject)
        # A secret's `name` here is the Secret.ident it would be held under.
        return (self.name or self.subject) == s.ident


def empty_path_error(path: str) -> ParameterError:
    """A required `[[parameters]] path` under which the source found nothing: missing, not done."""
    return ParameterError(
        path,
        "EmptyPath",
        "lists no parameters (check the path; required = false allows an empty one)",
        required=True,
        is_path=True,
    )


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one refresh cycle did."""

    ok: bool  # the source answered (per-parameter errors may still exist)
    complete: bool  # every required parameter has a value
    change: Change
    errors: tuple[ParameterError, ...] = ()
    reason: str | None = None
