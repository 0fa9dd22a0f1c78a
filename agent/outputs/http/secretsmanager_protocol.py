"""The Secrets Manager JSON protocol (awsJson1_1) answered from a Snapshot: pure logic, no I/O.

`answer(snapshot, operation, body)` returns what Secrets Manager would send for GetSecretValue,
BatchGetSecretValue and DescribeSecret. Writes (PutSecretValue, RotateSecret, ...) are refused
with `AccessDeniedException`, other operations with `UnknownOperationException`. Errors have
Secrets Manager's shape: HTTP 400 and `{"__type", "message"}`, so SDK exception classes
(`client.exceptions.ResourceNotFoundException`) work.

What "held" means: the agent answers the secret versions its `[[secrets]]` entries load, and
nothing else. A request without VersionId/VersionStage asks for AWSCURRENT; with a VersionId or
a staging label it is answered when a held version carries it. `render_value(secret)` is the
GetSecretValue body that `/secretsmanager/get` answers too.

No message ever holds a secret value.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from agent.outputs.http.ssm_protocol import SdkError, SdkReply, error_reply, request_body
from agent.snapshot import (
    AWSCURRENT,
    Secret,
    Snapshot,
    epoch_seconds,
    find_secret,
    select_version,
)

SERVICE_PREFIX = "secretsmanager."
READS = ("GetSecretValue", "BatchGetSecretValue", "DescribeSecret")
WRITES = frozenset(
    {
        "CreateSecret",
        "PutSecretValue",
        "UpdateSecret",
        "UpdateSecretVersionStage",
        "DeleteSecret",
        "RestoreSecret",
        "RotateSecret",
        "CancelRotateSecret",
        "TagResource",
        "UntagResource",
        "PutResourcePolicy",
        "DeleteResourcePolicy",
        "ReplicateSecretToRegions",
        "RemoveRegionsFromReplication",
        "StopReplicationToReplica",
    }
)
NOT_FOUND = "ResourceNotFoundException"
SECRET_NOT_FOUND = "Secrets Manager can't find the specified secret."  # noqa: S105 (a message)
BATCH_MAX = 20
FILTER_KEYS = ("name", "description", "tag-key", "tag-value", "primary-region", "all")
_USE_REAL_ENDPOINT = (
    "send it to the real Secrets Manager endpoint with a client created without the endpoint "
    "override"
)
_TOKEN_TAG = "ssm-sidecar/sm1:"  # noqa: S105 (a pagination marker)


def not_found(message: str = SECRET_NOT_FOUND) -> SdkError:
    return SdkError(NOT_FOUND, message)


def constraint(value: object, member: str, rule: str) -> SdkError:
    return SdkError(
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: Member must {rule}",
    )


def operation_of(target: str) -> str:
    """`secretsmanager.GetSecretValue` -> `GetSecretValue`."""
    operation = target[len(SERVICE_PREFIX) :] if target.startswith(SERVICE_PREFIX) else ""
    if not operation:
        raise SdkError("UnknownOperationException", f"{target}: not a Secrets Manager operation")
    return operation


# --- rendering ------------------------------------------------------------------------------


def render_value(s: Secret) -> dict[str, Any]:
    """GetSecretValue's answer for a held version (CreatedDate as epoch seconds, as on the
    wire; a SecretBinary as base64)."""
    body: dict[str, Any] = {
        "ARN": s.arn,
        "Name": s.name,
        "VersionId": s.version_id,
        "VersionStages": list(s.version_stages),
        "CreatedDate": epoch_seconds(s.created),
    }
    if s.string is not None:
        body["SecretString"] = s.string
    else:
        body["SecretBinary"] = base64.b64encode(s.binary or b"").decode()
    return body


def describe(s: Secret) -> dict[str, Any]:
    """DescribeSecret's answer from what the last listing said (no value)."""
    body = {k: v for k, v in s.metadata.items() if k != "VersionIdsToStages"}
    body.setdefault("ARN", s.arn)
    body.setdefault("Name", s.name)
    versions = s.metadata.get("VersionIdsToStages") or {s.version_id: list(s.version_stages)}
    body["VersionIdsToStages"] = {v: list(stages) for v, stages in versions.items()}
    return body


# --- finding what a request names -------------------------------------------------------------


def _text(body: Mapping[str, Any], member: str, low: int, high: int) -> str | None:
    value = body.get(member)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SdkError("SerializationException", f"{member} must be a string")
    if not low <= len(value) <= high:
        raise constraint(
            value if len(value) <= 64 else value[:64] + "…",
            member,
            f"have length between {low} and {high}",
        )
    return value


def resolve(
    snapshot: Snapshot, secret_id: str, version_id: str | None, stage: str | None
) -> Secret:
    """The held version a GetSecretValue names, or ResourceNotFoundException."""
    held = find_secret(snapshot, secret_id)
    if not held:
        raise not_found()
    found = select_version(held, version_id, stage)
    if found is not None:
        return found
    if version_id is not None:
        raise not_found(
            f"Secrets Manager can't find the specified secret value for VersionId: {version_id}"
        )
    raise not_found(
        "Secrets Manager can't find the specified secret value for staging label: "
        f"{stage or AWSCURRENT}"
    )


def get_secret_value(snapshot: Snapshot, body: Mapping[str, Any]) -> dict[str, Any]:
    secret_id = _text(body, "SecretId", 1, 2048)
    if secret_id is None:
        raise constraint("null", "secretId", "not be null")
    version_id = _text(body, "VersionId", 32, 64)
    stage = _text(body, "VersionStage", 1, 256)
    return render_value(resolve(snapshot, secret_id, version_id, stage))


def describe_secret(snapshot: Snapshot, body: Mapping[str, Any]) -> dict[str, Any]:
    secret_id = _text(body, "SecretId", 1, 2048)
    if secret_id is None:
        raise constraint("null", "secretId", "not be null")
    held = find_secret(snapshot, secret_id)
    if not held:
        raise not_found()
    current = select_version(held, None, None)
    return describe(current or held[0])


def _matcher(key: str, value: str) -> Callable[[Secret], bool]:
    negate = value.startswith("!")
    wanted = value[1:] if negate else value

    def texts(s: Secret) -> list[str]:
        meta = s.metadata
        tags = meta.get("Tags") or []
        by_key: dict[str, list[str]] = {
            "name": [s.name],
            "description": [str(meta.get("Description", ""))],
            "tag-key": [str(t.get("Key", "")) for t in tags],
            "tag-value": [str(t.get("Value", "")) for t in tags],
            "primary-region": [str(meta.get("PrimaryRegion", ""))],
        }
        if key == "all":
            return [t for values in by_key.values() for t in values]
        return by_key[key]

    def matches(s: Secret) -> bool:
        hit = any(t.startswith(wanted) for t in texts(s))
        return hit != negate

    return matches


def _filtered(snapshot: Snapshot, filters: Any) -> list[Secret]:
    if not isinstance(filters, list) or not filters:
        raise SdkError("ValidationException", "Filters must be a non-empty list")
    checks: list[list[Callable[[Secret], bool]]] = []
    for f in filters:
        key = f.get("Key") if isinstance(f, dict) else None
        values = f.get("Values") if isinstance(f, dict) else None
        if key not in FILTER_KEYS:
            raise constraint(
                key, "filters.member.key", f"satisfy enum value set: {list(FILTER_KEYS)}"
            )
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) for v in values)
        ):
            raise SdkError("ValidationException", f"filter {key}: Values must list strings")
        checks.append([_matcher(key, v) for v in values])
    current = [s for s in snapshot.secrets.values() if s.selector is None]
    # Filters are ANDed; the values of one filter are ORed.
    return sorted(
        (s for s in current if all(any(m(s) for m in one) for one in checks)),
        key=lambda s: s.name,
    )


def batch_get_secret_value(snapshot: Snapshot, body: Mapping[str, Any]) -> dict[str, Any]:
    ids = body.get("SecretIdList")
    filters = body.get("Filters")
    if (ids is None) == (filters is None):
        raise SdkError(
            "InvalidParameterException",
            "Either 'SecretIdList' or 'Filters' must be provided, but not both.",
        )
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise SdkError("SerializationException", "SecretIdList must be a list of strings")
        if not 1 <= len(ids) <= BATCH_MAX:
            raise constraint(len(ids), "secretIdList", f"have length between 1 and {BATCH_MAX}")
        values, errors = [], []
        for secret_id in ids:
            try:
                values.append(render_value(resolve(snapshot, secret_id, None, None)))
            except SdkError as exc:
                errors.append(
                    {"SecretId": secret_id, "ErrorCode": exc.code, "Message": exc.message}
                )
        return {"SecretValues": values, "Errors": errors}
    limit = body.get("MaxResults", BATCH_MAX)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= BATCH_MAX:
        raise constraint(limit, "maxResults", f"have value between 1 and {BATCH_MAX}")
    found = _filtered(snapshot, filters)
    token = body.get("NextToken")
    if token is not None:
        if not isinstance(token, str) or not token.startswith(_TOKEN_TAG):
            raise SdkError("InvalidNextTokenException", "The NextToken value is invalid.")
        after = token[len(_TOKEN_TAG) :]
        found = [s for s in found if s.name > after]
    page = found[:limit]
    reply: dict[str, Any] = {"SecretValues": [render_value(s) for s in page], "Errors": []}
    if len(found) > limit:
        reply["NextToken"] = _TOKEN_TAG + page[-1].name
    return reply


def answer(snapshot: Snapshot, operation: str, body: Any) -> SdkReply:
    """Secrets Manager's answer to `operation` with the decoded JSON `body`, from `snapshot`."""
    try:
        return SdkReply(200, _dispatch(snapshot, operation, body))
    except SdkError as exc:
        return error_reply(exc.code, exc.message, exc.status)


def _dispatch(snapshot: Snapshot, operation: str, body: Any) -> dict[str, Any]:
    body = request_body(
        operation,
        body,
        service="Secrets Manager",
        reads=READS,
        writes=WRITES,
        use_real_endpoint=_USE_REAL_ENDPOINT,
    )
    if operation == "GetSecretValue":
        return get_secret_value(snapshot, body)
    if operation == "BatchGetSecretValue":
        return batch_get_secret_value(snapshot, body)
    return describe_secret(snapshot, body)
