"""The AWS SDKs' SSM protocol (awsJson1_1) answered from a Snapshot: pure logic, no I/O.

`answer(snapshot, operation, body, fetched)` returns the (status, JSON body) SSM would send for
GetParameter, GetParameters, GetParametersByPath and DescribeParameters. Everything else is
refused: Parameter Store writes with `AccessDeniedException` (the agent is a read-only cache),
other operations with `UnknownOperationException`. Errors have SSM's shape, HTTP 400 and
`{"__type", "message"}`, so SDK exception classes (`ssm.exceptions.ParameterNotFound`) work.

What "held" means: a parameter the agent loaded without a selector answers requests without
one, and `name:N` for its own version N. A parameter pinned in the config (`version`/`label`)
answers only its selector and its version number: a request without a selector asks for the
latest version, which the agent does not hold. Names not held are looked up in `fetched` (what
the HTTP layer fetched on demand for them), else they are not found. Listings (by path,
DescribeParameters) hold only unpinned parameters, sorted by name; their NextToken is the last
name returned, so pages stay consistent across snapshot swaps.

No message ever holds a parameter value.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import calendar
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from agent.snapshot import (
    SECRETS_MANAGER_PREFIX,
    Parameter,
    Snapshot,
    find_served,
    matches_selector,
    selector_problem,
    split_selector,
)

SERVICE_PREFIX = "AmazonSSM."
CONTENT_TYPE = "application/x-amz-json-1.1"
READS = ("GetParameter", "GetParameters", "GetParametersByPath", "DescribeParameters")
# Parameter Store's own writes: answered as an IAM denial would be, so apps handle them as such.
WRITES = frozenset(
    {
        "PutParameter",
        "DeleteParameter",
        "DeleteParameters",
        "LabelParameterVersion",
        "UnlabelParameterVersion",
        "AddTagsToResource",
        "RemoveTagsFromResource",
    }
)
TYPES = ("String", "StringList", "SecureString")
TIERS = ("Standard", "Advanced", "Intelligent-Tiering")
TIER = "Standard"  # the agent cannot know a parameter's tier; Standard is by far the common one
MAX_NAMES = 10
BY_PATH_MAX_RESULTS = 10
DESCRIBE_MAX_RESULTS = 50
DEFAULT_PAGE = 10
_TOKEN_TAG = "ssm-sidecar/1:"  # noqa: S105 (a pagination marker)
_USE_REAL_ENDPOINT = (
    "send it to the real SSM endpoint with a second client created without the endpoint override"
)


class SdkError(Exception):
    """An SSM error answer. `message` names parameters at most, never values."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class SdkReply:
    status: int
    body: dict[str, Any]


def error_reply(code: str, message: str, status: int = 400) -> SdkReply:
    return SdkReply(status, {"__type": code, "message": message})


def request_body(
    operation: str,
    body: Any,
    *,
    service: str,
    reads: Sequence[str],
    writes: Collection[str],
    use_real_endpoint: str,
) -> dict[str, Any]:
    """The JSON object of a request for one of `reads`: a write is refused as an IAM denial
    would be, any other operation is unknown, a body that is not an object is refused."""
    if operation in writes:
        raise SdkError(
            "AccessDeniedException",
            f"{operation} refused: the ssm-sidecar agent is a read-only cache of {service}; "
            f"{use_real_endpoint}",
        )
    if operation not in reads:
        raise SdkError(
            "UnknownOperationException",
            f"{operation} is not answered by the ssm-sidecar agent, which serves only "
            f"{', '.join(reads)} from its cache; {use_real_endpoint}",
        )
    if not isinstance(body, dict):
        raise SdkError("SerializationException", "the request body must be a JSON object")
    return body


def validation(message: str) -> SdkError:
    return SdkError("ValidationException", message)


def constraint(value: object, member: str, rule: str) -> SdkError:
    """SSM's wording for a request member outside its model's constraints."""
    return validation(
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: Member must {rule}"
    )


def operation_of(target: str | None) -> str:
    """`AmazonSSM.GetParameter` -> `GetParameter`; any other service is refused."""
    if not target:
        raise SdkError(
            "UnknownOperationException",
            "the X-Amz-Target header is required (AmazonSSM.<Operation>)",
        )
    service, _, operation = target.partition(".")
    if service + "." != SERVICE_PREFIX or not operation:
        raise SdkError(
            "UnknownOperationException",
            f"{target}: this endpoint answers only the SSM Parameter Store reads "
            f"({', '.join(READS)}); is a global AWS_ENDPOINT_URL sending another service here? "
            "Use AWS_ENDPOINT_URL_SSM instead",
        )
    return operation


# --- request members ----------------------------------------------------------------------------


def _serialization(member: str, kind: str) -> SdkError:
    return SdkError("SerializationException", f"{member} must be {kind}")


def _string(body: Mapping[str, Any], member: str) -> str | None:
    value = body.get(member)
    if value is not None and not isinstance(value, str):
        raise _serialization(member, "a string")
    return value


def _required_string(body: Mapping[str, Any], member: str, wire: str) -> str:
    value = _string(body, member)
    if value is None:
        raise constraint("null", wire, "not be null")
    if not value:
        raise constraint(value, wire, "have length greater than or equal to 1")
    return value


def _bool(body: Mapping[str, Any], member: str) -> bool:
    value = body.get(member, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _serialization(member, "a boolean")
    return value


def _max_results(body: Mapping[str, Any], most: int) -> int:
    value = body.get("MaxResults")
    if value is None:
        return min(DEFAULT_PAGE, most)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _serialization("MaxResults", "an integer")
    if value < 1:
        raise constraint(value, "maxResults", "have value greater than or equal to 1")
    if value > most:
        raise constraint(value, "maxResults", f"have value less than or equal to {most}")
    return value


def _names(body: Mapping[str, Any]) -> list[str]:
    names = body.get("Names")
    if names is None:
        raise constraint("null", "names", "not be null")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _serialization("Names", "a list of strings")
    if not names:
        raise constraint("[]", "names", "have length greater than or equal to 1")
    if len(names) > MAX_NAMES:
        raise constraint(
            f"[{', '.join(names)}]", "names", f"have length less than or equal to {MAX_NAMES}"
        )
    if not all(names):
        raise validation("a name in Names is empty")
    return list(dict.fromkeys(names))  # SSM answers a repeated name once


def _filters(body: Mapping[str, Any], member: str) -> list[dict[str, Any]]:
    raw = body.get(member)
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(f, dict) for f in raw):
        raise _serialization(member, "a list of objects")
    for f in raw:
        if not isinstance(f.get("Key"), str) or not f["Key"]:
            raise constraint("null", f"{member[0].lower()}{member[1:]}.member.key", "not be null")
        values = f.get("Values")
        if values is not None and (
            not isinstance(values, list) or not all(isinstance(v, str) for v in values)
        ):
            raise _serialization(f"{member} Values", "a list of strings")
        if f.get("Option") is not None and not isinstance(f["Option"], str):
            raise _serialization(f"{member} Option", "a string")
    return raw


# --- what the agent holds -----------------------------------------------------------------------


def _selector(requested: str) -> tuple[str, str | None]:
    base, selector = split_selector(requested)
    problem = None if selector is None else selector_problem(selector)
    if problem is not None:
        raise validation(f"{requested}: {problem}")
    return base, selector


def held(snapshot: Snapshot, requested: str) -> Parameter | None:
    """The parameter that answers `requested` (a name, ARN, `name:3` or `name:label`), if held."""
    base, selector = _selector(requested)
    p = find_served(snapshot, base)
    if p is None:
        return None
    if selector is None:
        # No selector asks for the latest version; a pinned parameter may not be it.
        return p if p.selector is None else None
    return p if matches_selector(p, selector) else None


def names_to_fetch(
    snapshot: Snapshot, operation: str, body: Mapping[str, Any], covers: Callable[[str], bool]
) -> list[str]:
    """Requested names the agent does not hold but may fetch: under the on-demand prefixes
    (`covers` says which), or another version of a name it serves (`name:1` while it holds
    version 2, or a pinned name's latest version)."""
    if not isinstance(body, Mapping):
        return []
    if operation == "GetParameter":
        requested = [_required_string(body, "Name", "name")]
    elif operation == "GetParameters":
        requested = _names(body)
    else:
        return []
    decrypt = _bool(body, "WithDecryption")
    wanted = []
    for name in requested:
        base, _ = _selector(name)
        _check_secrets_manager(base, decrypt)
        if held(snapshot, name) is None and (
            covers(base) or find_served(snapshot, base) is not None
        ):
            wanted.append(name)
    return wanted


def _resolve(
    snapshot: Snapshot, requested: str, fetched: Mapping[str, Parameter | None]
) -> Parameter | None:
    return held(snapshot, requested) or fetched.get(requested)


def _listed(snapshot: Snapshot) -> list[Parameter]:
    """What listings answer: the unpinned parameters, sorted by name."""
    return sorted((p for p in snapshot if p.selector is None), key=lambda p: p.name)


# --- rendering ----------------------------------------------------------------------------------


def epoch_seconds(p: Parameter) -> int | float:
    """LastModifiedDate as SSM's JSON has it: epoch seconds, truncated to milliseconds (the
    Smithy rule for awsJson timestamps), a whole number when there are none."""
    moment = p.last_modified
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    whole = calendar.timegm(moment.utctimetuple())
    millis = moment.microsecond // 1000
    return whole + millis / 1000.0 if millis else whole


def parameter_entry(p: Parameter, with_decryption: bool, selector: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if p.arn:
        entry["ARN"] = p.arn
    entry["DataType"] = p.data_type
    entry["LastModifiedDate"] = epoch_seconds(p)
    entry["Name"] = p.name
    if selector is not None:
        entry["Selector"] = selector  # SSM echoes the selector a request asked with
    entry["Type"] = p.type
    entry["Value"] = p.value_for(with_decryption)
    entry["Version"] = p.version
    return entry


def metadata_entry(p: Parameter) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if p.arn:
        entry["ARN"] = p.arn
    entry["DataType"] = p.data_type
    entry["LastModifiedDate"] = epoch_seconds(p)
    entry["Name"] = p.name
    entry["Policies"] = []
    entry["Tier"] = TIER
    entry["Type"] = p.type
    entry["Version"] = p.version
    return entry


def _check_secrets_manager(name: str, with_decryption: bool) -> None:
    if name.startswith(SECRETS_MANAGER_PREFIX) and not with_decryption:
        raise validation("WithDecryption flag must be True for retrieving a Secret Manager secret.")


# --- pagination ---------------------------------------------------------------------------------


def encode_token(last_name: str) -> str:
    return base64.urlsafe_b64encode((_TOKEN_TAG + last_name).encode()).decode()


def decode_token(token: str | None) -> str | None:
    """The last name the previous page returned; InvalidNextToken for anything not ours."""
    if token is None:
        return None
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    if not text.startswith(_TOKEN_TAG):
        raise SdkError("InvalidNextToken", "The specified token isn't valid.")
    return text[len(_TOKEN_TAG) :]


def _page(
    items: list[Parameter], after: str | None, size: int
) -> tuple[list[Parameter], str | None]:
    """Items sorted by name: those after `after`, at most `size`, and the next token if more."""
    start = 0 if after is None else bisect.bisect_right([p.name for p in items], after)
    page = items[start : start + size]
    more = start + size < len(items)
    return page, encode_token(page[-1].name) if more and page else None


# --- filters ------------------------------------------------------------------------------------


def _slash(name: str) -> str:
    return "/" + name.lstrip("/")


def _one_level_under(name: str, path: str) -> bool:
    path = _slash(path).rstrip("/")
    name = _slash(name)
    return name.startswith(path + "/") and "/" not in name[len(path) + 1 :]


def _option(f: Mapping[str, Any], allowed: tuple[str, ...], default: str) -> str:
    option = f.get("Option") or default
    if option not in allowed:
        raise SdkError(
            "InvalidFilterOption",
            f"The following filter option is not valid: {option}. "
            f"Valid options include: [{', '.join(allowed)}].",
        )
    return str(option)


def _values(f: Mapping[str, Any], valid: tuple[str, ...] | None = None) -> list[str]:
    values: list[str] = f.get("Values") or []
    if not values:
        raise SdkError(
            "InvalidFilterValue",
            f"The following filter values are missing : null for filter key {f['Key']}.",
        )
    if valid is not None:
        for v in values:
            if v not in valid:
                raise SdkError(
                    "InvalidFilterValue",
                    f"The following filter value is not valid: {v}. "
                    f"Valid values include: [{', '.join(valid)}].",
                )
    return values


Match = Callable[[Parameter], bool]


def _type_match(f: Mapping[str, Any]) -> Match:
    option = _option(f, ("Equals", "BeginsWith"), "Equals")
    values = _values(f, TYPES if option == "Equals" else None)
    if option == "BeginsWith":
        return lambda p: any(p.type.startswith(v) for v in values)
    return lambda p: p.type in values


def _label_match(f: Mapping[str, Any]) -> Match:
    # The agent knows a label only when the config pinned a parameter by it; listings hold no
    # pinned parameters, so nothing the agent lists is known to carry a label.
    _option(f, ("Equals",), "Equals")
    labels = {":" + v for v in _values(f)}
    return lambda p: p.selector in labels


def _name_match(f: Mapping[str, Any]) -> Match:
    option = _option(f, ("Equals", "BeginsWith", "Contains"), "Equals")
    values = _values(f)
    if option == "Contains":
        return lambda p: any(v in p.name for v in values)
    wanted = [_slash(v) for v in values]
    if option == "BeginsWith":
        return lambda p: any(_slash(p.name).startswith(v) for v in wanted)
    return lambda p: _slash(p.name) in wanted


def _path_match(f: Mapping[str, Any]) -> Match:
    option = _option(f, ("OneLevel", "Recursive"), "OneLevel")
    values = _values(f)
    for v in values:
        if not v.startswith("/"):
            raise validation(f"Path filter value {v} must begin with a forward slash /")
    if option == "Recursive":
        prefixes = [v.rstrip("/") + "/" for v in values]
        return lambda p: any(_slash(p.name).startswith(v) for v in prefixes)
    return lambda p: any(_one_level_under(p.name, v) for v in values)


def _tier_match(f: Mapping[str, Any]) -> Match:
    _option(f, ("Equals",), "Equals")
    values = _values(f, TIERS)
    return lambda _: TIER in values


def _unsupported(key: str, valid: Iterable[str]) -> SdkError:
    known = ", ".join(valid)
    if key == "KeyId" or key.startswith("tag:"):
        return SdkError(
            "InvalidFilterKey",
            f"The filter key {key} is not answered by the ssm-sidecar cache (it does not keep "
            f"KMS key ids or tags); {_USE_REAL_ENDPOINT}. Filter keys it answers: [{known}].",
        )
    return SdkError(
        "InvalidFilterKey",
        f"The following filter key is not valid: {key}. Valid filter keys include: [{known}].",
    )


def _matchers(
    filters: list[dict[str, Any]], builders: Mapping[str, Callable[[Mapping[str, Any]], Match]]
) -> list[Match]:
    seen: set[str] = set()
    matchers = []
    for f in filters:
        key = f["Key"]
        if key in seen:
            raise SdkError(
                "InvalidFilterKey",
                f"The following filter is duplicated in the request: {key}. "
                "A request can contain only one occurrence of a specific filter.",
            )
        seen.add(key)
        build = builders.get(key)
        if build is None:
            raise _unsupported(key, builders)
        matchers.append(build(f))
    return matchers


BY_PATH_FILTERS: Mapping[str, Callable[[Mapping[str, Any]], Match]] = {
    "Type": _type_match,
    "Label": _label_match,
}
DESCRIBE_FILTERS: Mapping[str, Callable[[Mapping[str, Any]], Match]] = {
    "Name": _name_match,
    "Path": _path_match,
    "Type": _type_match,
    "Tier": _tier_match,
}


def _begins_with(values: list[str]) -> Match:
    return lambda p: any(p.name.startswith(v) for v in values)


def _type_in(values: list[str]) -> Match:
    return lambda p: p.type in values


def _legacy_filters(filters: list[dict[str, Any]]) -> list[Match]:
    """DescribeParameters' older `Filters` member: Name (begins with) and Type (equals)."""
    matchers: list[Match] = []
    for f in filters:
        key = f["Key"]
        if key == "Name":
            matchers.append(_begins_with(_values(f)))
        elif key == "Type":
            matchers.append(_type_in(_values(f)))
        else:
            raise _unsupported(key, ("Name", "Type"))
    return matchers


# --- operations ---------------------------------------------------------------------------------


def get_parameter(
    snapshot: Snapshot, body: Mapping[str, Any], fetched: Mapping[str, Parameter | None]
) -> dict[str, Any]:
    requested = _required_string(body, "Name", "name")
    decrypt = _bool(body, "WithDecryption")
    base, selector = _selector(requested)
    _check_secrets_manager(base, decrypt)
    p = _resolve(snapshot, requested, fetched)
    if p is None:
        raise SdkError("ParameterNotFound", f"Parameter {requested} not found.")
    return {"Parameter": parameter_entry(p, decrypt, selector)}


def get_parameters(
    snapshot: Snapshot, body: Mapping[str, Any], fetched: Mapping[str, Parameter | None]
) -> dict[str, Any]:
    names = _names(body)
    decrypt = _bool(body, "WithDecryption")
    found: list[dict[str, Any]] = []
    invalid: list[str] = []
    for requested in names:
        base, selector = _selector(requested)
        _check_secrets_manager(base, decrypt)
        p = _resolve(snapshot, requested, fetched)
        if p is None:
            invalid.append(requested)
        else:
            found.append(parameter_entry(p, decrypt, selector))
    return {"InvalidParameters": invalid, "Parameters": found}


def get_parameters_by_path(snapshot: Snapshot, body: Mapping[str, Any]) -> dict[str, Any]:
    path = _required_string(body, "Path", "path")
    if not path.startswith("/"):
        raise validation(f"The path {path} is not valid: a path must begin with a forward slash /")
    recursive = _bool(body, "Recursive")
    decrypt = _bool(body, "WithDecryption")
    size = _max_results(body, BY_PATH_MAX_RESULTS)
    after = decode_token(_string(body, "NextToken"))
    matchers = _matchers(_filters(body, "ParameterFilters"), BY_PATH_FILTERS)
    prefix = path.rstrip("/") + "/"
    items = [
        p
        for p in _listed(snapshot)
        if (prefix == "/" or p.name.startswith(prefix))
        and (recursive or _one_level_under(p.name, path))
        and all(m(p) for m in matchers)
    ]
    page, token = _page(items, after, size)
    reply: dict[str, Any] = {"Parameters": [parameter_entry(p, decrypt, None) for p in page]}
    if token is not None:
        reply["NextToken"] = token
    return reply


def describe_parameters(snapshot: Snapshot, body: Mapping[str, Any]) -> dict[str, Any]:
    legacy = _filters(body, "Filters")
    modern = _filters(body, "ParameterFilters")
    if legacy and modern:
        raise validation("You can use either Filters or ParameterFilters in a single request.")
    matchers = _legacy_filters(legacy) if legacy else _matchers(modern, DESCRIBE_FILTERS)
    size = _max_results(body, DESCRIBE_MAX_RESULTS)
    after = decode_token(_string(body, "NextToken"))
    items = [p for p in _listed(snapshot) if all(m(p) for m in matchers)]
    page, token = _page(items, after, size)
    reply: dict[str, Any] = {"Parameters": [metadata_entry(p) for p in page]}
    if token is not None:
        reply["NextToken"] = token
    return reply


def answer(
    snapshot: Snapshot,
    operation: str,
    body: Any,
    fetched: Mapping[str, Parameter | None] | None = None,
) -> SdkReply:
    """SSM's answer to `operation` with the decoded JSON `body`, from `snapshot` (+ `fetched`)."""
    try:
        return SdkReply(200, _dispatch(snapshot, operation, body, fetched or {}))
    except SdkError as exc:
        return error_reply(exc.code, exc.message, exc.status)


def _dispatch(
    snapshot: Snapshot, operation: str, body: Any, fetched: Mapping[str, Parameter | None]
) -> dict[str, Any]:
    body = request_body(
        operation,
        body,
        service="Parameter Store",
        reads=READS,
        writes=WRITES,
        use_real_endpoint=_USE_REAL_ENDPOINT,
    )
    if operation == "GetParameter":
        return get_parameter(snapshot, body, fetched)
    if operation == "GetParameters":
        return get_parameters(snapshot, body, fetched)
    if operation == "GetParametersByPath":
        return get_parameters_by_path(snapshot, body)
    return describe_parameters(snapshot, body)
