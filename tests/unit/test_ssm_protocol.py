"""The SSM JSON protocol answered from a Snapshot: shapes, selectors, errors, filters, pages."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.outputs.http.ssm_protocol import (
    SdkError,
    SdkReply,
    answer,
    decode_token,
    encode_token,
    epoch_seconds,
    held,
    names_to_fetch,
    operation_of,
)
from agent.snapshot import Snapshot
from tests.support.builders import parameter, snapshot

SECRET = "plaintext-s3cret"
CIPHER = "AQICAHencrypted=="


STANDARD = snapshot(
    parameter("/app/db/url", "postgres://db", version=3),
    parameter("/app/db/password", SECRET, version=7, type="SecureString", encrypted=CIPHER),
    parameter("/app/list", "a,b", version=2, type="StringList"),
    parameter("/app/name", "svc", version=1),
    parameter("/other/x", "x", version=1),
    parameter("/pinned", "old", version=2, selector=":2"),
    parameter("/labelled", "stable-value", version=5, selector=":stable"),
    parameter("top", "no slash", version=1),
)


def ok(operation: str, body: dict[str, Any], snapshot: Snapshot = STANDARD, **kw: Any) -> Any:
    reply = answer(snapshot, operation, body, **kw)
    assert reply.status == 200, reply.body
    return reply.body


def error(operation: str, body: Any, snapshot: Snapshot = STANDARD) -> tuple[int, str, str]:
    reply = answer(snapshot, operation, body)
    assert set(reply.body) == {"__type", "message"}
    assert SECRET not in reply.body["message"] and CIPHER not in reply.body["message"]
    return reply.status, reply.body["__type"], reply.body["message"]


# --- GetParameter ------------------------------------------------------------------------------


def test_get_parameter_shape_is_ssms() -> None:
    body = ok("GetParameter", {"Name": "/app/db/url"})
    assert body == {
        "Parameter": {
            "ARN": "arn:aws:ssm:us-east-1:123456789012:parameter/app/db/url",
            "DataType": "text",
            "LastModifiedDate": 1772600767.891,
            "Name": "/app/db/url",
            "Type": "String",
            "Value": "postgres://db",
            "Version": 3,
        }
    }


def test_secure_string_without_decryption_answers_the_encrypted_value() -> None:
    plain = ok("GetParameter", {"Name": "/app/db/password", "WithDecryption": True})
    assert plain["Parameter"]["Value"] == SECRET
    for body in (
        {"Name": "/app/db/password"},
        {"Name": "/app/db/password", "WithDecryption": False},
    ):
        assert ok("GetParameter", body)["Parameter"]["Value"] == CIPHER


def test_selectors_answer_only_what_the_agent_holds() -> None:
    by_version = ok("GetParameter", {"Name": "/app/db/url:3"})["Parameter"]
    assert (by_version["Selector"], by_version["Version"]) == (":3", 3)
    assert error("GetParameter", {"Name": "/app/db/url:2"})[:2] == (400, "ParameterNotFound")
    assert error("GetParameter", {"Name": "/app/db/url:prod"})[:2] == (400, "ParameterNotFound")
    labelled = ok("GetParameter", {"Name": "/labelled:stable"})["Parameter"]
    assert (labelled["Selector"], labelled["Version"]) == (":stable", 5)
    assert ok("GetParameter", {"Name": "/labelled:5"})["Parameter"]["Selector"] == ":5"
    # A pinned parameter is not the latest version a request without selector asks for.
    status, code, message = error("GetParameter", {"Name": "/pinned"})
    assert (status, code, message) == (400, "ParameterNotFound", "Parameter /pinned not found.")
    assert ok("GetParameter", {"Name": "/pinned:2"})["Parameter"]["Value"] == "old"
    assert error("GetParameter", {"Name": "/app/db/url:"})[1] == "ValidationException"


def test_arns_and_slashless_names() -> None:
    arn = "arn:aws:ssm:us-east-1:123456789012:parameter/app/name"
    assert ok("GetParameter", {"Name": arn})["Parameter"]["Name"] == "/app/name"
    assert ok("GetParameter", {"Name": arn + ":1"})["Parameter"]["Selector"] == ":1"
    assert ok("GetParameter", {"Name": "top"})["Parameter"]["Value"] == "no slash"


def test_fetched_on_demand_fills_what_is_not_held() -> None:
    lazy = parameter("/dyn/a", "lazy", version=4, type="SecureString", encrypted="enc")
    body = ok("GetParameter", {"Name": "/dyn/a:4"}, fetched={"/dyn/a:4": lazy})
    assert body["Parameter"]["Value"] == "enc" and body["Parameter"]["Selector"] == ":4"
    assert error("GetParameter", {"Name": "/dyn/b"})[1] == "ParameterNotFound"
    missing = answer(STANDARD, "GetParameter", {"Name": "/dyn/b"}, {"/dyn/b": None})
    assert missing.body["__type"] == "ParameterNotFound"


def test_names_to_fetch_lists_covered_names_not_held() -> None:
    def covers(name: str) -> bool:
        return name.startswith(("/dyn/", "/app/"))

    body = {"Names": ["/dyn/a", "/app/name", "/app/name:9", "/other/y", "/dyn/a"]}
    assert names_to_fetch(STANDARD, "GetParameters", body, covers) == ["/dyn/a", "/app/name:9"]
    assert names_to_fetch(STANDARD, "GetParameter", {"Name": "/dyn/z:lbl"}, covers) == [
        "/dyn/z:lbl"
    ]
    assert names_to_fetch(STANDARD, "GetParametersByPath", {"Path": "/dyn"}, covers) == []
    with pytest.raises(SdkError):
        names_to_fetch(STANDARD, "GetParameter", {}, covers)


def test_secrets_manager_references_need_decryption() -> None:
    ref = parameter("/aws/reference/secretsmanager/db", SECRET, version=0, type="SecureString")
    served = snapshot(ref)
    status, code, message = error("GetParameter", {"Name": ref.name}, served)
    assert (status, code) == (400, "ValidationException") and "WithDecryption" in message
    got = ok("GetParameter", {"Name": ref.name, "WithDecryption": True}, served)
    assert got["Parameter"]["Value"] == SECRET


def test_malformed_requests_are_validation_errors() -> None:
    assert error("GetParameter", {}) == (
        400,
        "ValidationException",
        "1 validation error detected: Value 'null' at 'name' failed to satisfy constraint: "
        "Member must not be null",
    )
    assert error("GetParameter", {"Name": ""})[1] == "ValidationException"
    assert error("GetParameter", {"Name": 3})[1] == "SerializationException"
    assert error("GetParameter", {"Name": "/app/name", "WithDecryption": "yes"})[1] == (
        "SerializationException"
    )
    assert error("GetParameter", ["not", "an", "object"])[1] == "SerializationException"


# --- GetParameters -----------------------------------------------------------------------------


def test_get_parameters_splits_found_and_invalid_in_request_order() -> None:
    names = ["/app/name", "/nope", "/app/db/password", "/app/db/url:3", "/app/db/url:1", "/nope"]
    body = ok("GetParameters", {"Names": names, "WithDecryption": True})
    assert [p["Name"] for p in body["Parameters"]] == [
        "/app/name",
        "/app/db/password",
        "/app/db/url",
    ]
    assert body["Parameters"][1]["Value"] == SECRET
    assert "Selector" not in body["Parameters"][0] and body["Parameters"][2]["Selector"] == ":3"
    assert body["InvalidParameters"] == ["/nope", "/app/db/url:1"]


def test_get_parameters_limits() -> None:
    eleven = [f"/n{i}" for i in range(11)]
    status, code, message = error("GetParameters", {"Names": eleven})
    assert (status, code) == (400, "ValidationException")
    assert "less than or equal to 10" in message
    assert error("GetParameters", {"Names": []})[1] == "ValidationException"
    assert error("GetParameters", {})[1] == "ValidationException"
    assert error("GetParameters", {"Names": "/app/name"})[1] == "SerializationException"


# --- GetParametersByPath -----------------------------------------------------------------------


def names_of(body: dict[str, Any]) -> list[str]:
    return [p["Name"] for p in body["Parameters"]]


def test_by_path_one_level_or_recursive_without_pinned() -> None:
    one = ok("GetParametersByPath", {"Path": "/app"})
    assert names_of(one) == ["/app/list", "/app/name"]
    deep = ok("GetParametersByPath", {"Path": "/app/", "Recursive": True})
    assert names_of(deep) == ["/app/db/password", "/app/db/url", "/app/list", "/app/name"]
    assert deep["Parameters"][0]["Value"] == CIPHER
    everything = ok("GetParametersByPath", {"Path": "/", "Recursive": True, "MaxResults": 10})
    assert "/pinned" not in names_of(everything) and "/labelled" not in names_of(everything)
    assert names_of(ok("GetParametersByPath", {"Path": "/"})) == ["top"]
    assert ok("GetParametersByPath", {"Path": "/nothing"}) == {"Parameters": []}


def test_by_path_validation() -> None:
    assert error("GetParametersByPath", {})[1] == "ValidationException"
    assert error("GetParametersByPath", {"Path": "app"})[1] == "ValidationException"
    for bad in (0, 11):
        status, code, message = error("GetParametersByPath", {"Path": "/app", "MaxResults": bad})
        assert (status, code) == (400, "ValidationException") and "maxResults" in message
    assert error("GetParametersByPath", {"Path": "/a", "MaxResults": "5"})[1] == (
        "SerializationException"
    )
    assert error("GetParametersByPath", {"Path": "/app", "NextToken": "garbage"})[1] == (
        "InvalidNextToken"
    )


def test_by_path_filters() -> None:
    def by_path(*filters: dict[str, Any]) -> list[str]:
        body = {"Path": "/", "Recursive": True, "ParameterFilters": list(filters)}
        return names_of(ok("GetParametersByPath", body))

    assert by_path({"Key": "Type", "Values": ["SecureString"]}) == ["/app/db/password"]
    assert by_path({"Key": "Type", "Option": "BeginsWith", "Values": ["String"]}) == [
        "/app/db/url",
        "/app/list",
        "/app/name",
        "/other/x",
        "top",
    ]
    # Listings hold no pinned parameters: none is known to carry a label.
    assert by_path({"Key": "Label", "Values": ["stable"]}) == []
    for bad, code in (
        ({"Key": "Type", "Values": ["Number"]}, "InvalidFilterValue"),
        ({"Key": "Type"}, "InvalidFilterValue"),
        ({"Key": "Type", "Option": "Contains", "Values": ["S"]}, "InvalidFilterOption"),
        ({"Key": "Name", "Values": ["/app"]}, "InvalidFilterKey"),
        ({"Key": "KeyId", "Values": ["alias/x"]}, "InvalidFilterKey"),
        ({"Key": "tag:team", "Values": ["a"]}, "InvalidFilterKey"),
    ):
        body = {"Path": "/", "ParameterFilters": [bad]}
        assert error("GetParametersByPath", body)[1] == code, bad
    twice = {"Path": "/", "ParameterFilters": [{"Key": "Type", "Values": ["String"]}] * 2}
    assert error("GetParametersByPath", twice)[1] == "InvalidFilterKey"


def test_pages_are_stable_when_the_snapshot_changes_between_them() -> None:
    first = snapshot(*(parameter(f"/p/{i:02d}", str(i)) for i in range(0, 30, 2)))
    page1 = ok("GetParametersByPath", {"Path": "/p", "MaxResults": 4}, first)
    assert names_of(page1) == ["/p/00", "/p/02", "/p/04", "/p/06"]
    # Between pages: one parameter before the cursor and one after it appear, one goes away.
    second = snapshot(
        *(parameter(f"/p/{i:02d}", str(i)) for i in range(0, 30, 2) if i != 8),
        parameter("/p/01", "new before"),
        parameter("/p/09", "new after"),
    )
    page2 = ok(
        "GetParametersByPath",
        {"Path": "/p", "MaxResults": 4, "NextToken": page1["NextToken"]},
        second,
    )
    assert names_of(page2) == ["/p/09", "/p/10", "/p/12", "/p/14"]


@settings(max_examples=60, deadline=None)
@given(
    names=st.sets(st.from_regex(r"/h/[a-z]{1,3}(/[a-z]{1,2})?", fullmatch=True), max_size=40),
    size=st.integers(1, 10),
    recursive=st.booleans(),
)
def test_paging_returns_every_parameter_once_in_name_order(
    names: set[str], size: int, recursive: bool
) -> None:
    served = snapshot(*(parameter(n) for n in names))
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        body: dict[str, Any] = {"Path": "/h", "Recursive": recursive, "MaxResults": size}
        if token is not None:
            body["NextToken"] = token
        reply = ok("GetParametersByPath", body, served)
        assert len(reply["Parameters"]) <= size
        seen.extend(names_of(reply))
        pages += 1
        token = reply.get("NextToken")
        if token is None:
            break
        assert len(reply["Parameters"]) == size
    expected = sorted(n for n in names if recursive or n.count("/") == 2)
    assert seen == expected
    assert pages == max(1, -(-len(expected) // size))


def test_tokens_are_opaque_but_ours() -> None:
    assert decode_token(encode_token("/a/b")) == "/a/b"
    assert decode_token(None) is None
    foreign = base64.urlsafe_b64encode(b"/a/b").decode()
    for bad in (foreign, "%%%", "", "bm90IG91cnM="):
        with pytest.raises(SdkError) as raised:
            decode_token(bad)
        assert raised.value.code == "InvalidNextToken"


# --- DescribeParameters ------------------------------------------------------------------------


def test_describe_has_metadata_and_no_values() -> None:
    body = ok("DescribeParameters", {"MaxResults": 2})
    assert body["Parameters"] == [
        {
            "ARN": "arn:aws:ssm:us-east-1:123456789012:parameter/app/db/password",
            "DataType": "text",
            "LastModifiedDate": 1772600767.891,
            "Name": "/app/db/password",
            "Policies": [],
            "Tier": "Standard",
            "Type": "SecureString",
            "Version": 7,
        },
        {
            "ARN": "arn:aws:ssm:us-east-1:123456789012:parameter/app/db/url",
            "DataType": "text",
            "LastModifiedDate": 1772600767.891,
            "Name": "/app/db/url",
            "Policies": [],
            "Tier": "Standard",
            "Type": "String",
            "Version": 3,
        },
    ]
    rest = ok("DescribeParameters", {"MaxResults": 50, "NextToken": body["NextToken"]})
    assert names_of(rest) == ["/app/list", "/app/name", "/other/x", "top"]
    assert "NextToken" not in rest
    everything = str(ok("DescribeParameters", {"MaxResults": 50}))
    assert SECRET not in everything and CIPHER not in everything and "postgres" not in everything
    assert error("DescribeParameters", {"MaxResults": 51})[1] == "ValidationException"


def test_describe_filters() -> None:
    def described(**body: Any) -> list[str]:
        return names_of(ok("DescribeParameters", {"MaxResults": 50, **body}))

    def pf(key: str, *values: str, option: str | None = None) -> list[dict[str, Any]]:
        f: dict[str, Any] = {"Key": key, "Values": list(values)}
        if option:
            f["Option"] = option
        return [f]

    assert described(ParameterFilters=pf("Name", "/app/name", "top")) == ["/app/name", "top"]
    assert described(ParameterFilters=pf("Name", "/app/d", option="BeginsWith")) == [
        "/app/db/password",
        "/app/db/url",
    ]
    assert described(ParameterFilters=pf("Name", "lis", option="Contains")) == ["/app/list"]
    assert described(ParameterFilters=pf("Path", "/app")) == ["/app/list", "/app/name"]
    assert described(ParameterFilters=pf("Path", "/app", option="Recursive")) == [
        "/app/db/password",
        "/app/db/url",
        "/app/list",
        "/app/name",
    ]
    assert described(ParameterFilters=pf("Type", "StringList")) == ["/app/list"]
    assert len(described(ParameterFilters=pf("Tier", "Standard"))) == 6
    assert described(ParameterFilters=pf("Tier", "Advanced")) == []
    assert described(Filters=pf("Name", "/app/db")) == ["/app/db/password", "/app/db/url"]
    assert described(Filters=pf("Type", "SecureString")) == ["/app/db/password"]
    both = {"Filters": pf("Type", "String"), "ParameterFilters": pf("Type", "String")}
    assert error("DescribeParameters", both)[1] == "ValidationException"
    assert error("DescribeParameters", {"ParameterFilters": pf("Label", "x")})[1] == (
        "InvalidFilterKey"
    )
    assert error("DescribeParameters", {"Filters": pf("KeyId", "k")})[1] == "InvalidFilterKey"
    assert error("DescribeParameters", {"ParameterFilters": pf("Tier", "Gold")})[1] == (
        "InvalidFilterValue"
    )
    bad_path = {"ParameterFilters": pf("Path", "app")}
    assert error("DescribeParameters", bad_path)[1] == "ValidationException"


# --- operations the cache does not answer ------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    [
        "PutParameter",
        "DeleteParameter",
        "DeleteParameters",
        "LabelParameterVersion",
        "UnlabelParameterVersion",
        "AddTagsToResource",
        "RemoveTagsFromResource",
    ],
)
def test_writes_are_refused_as_read_only(operation: str) -> None:
    status, code, message = error(operation, {"Name": "/app/name", "Value": SECRET})
    assert (status, code) == (400, "AccessDeniedException")
    assert "read-only" in message and "second client" in message and operation in message


def test_other_operations_and_services_are_unknown() -> None:
    status, code, message = error("GetParameterHistory", {"Name": "/app/name"})
    assert (status, code) == (400, "UnknownOperationException")
    assert "GetParametersByPath" in message
    assert operation_of("AmazonSSM.GetParameter") == "GetParameter"
    for target in (None, "", "TrentService.Decrypt", "AmazonSSM.", "AmazonSSMx.GetParameter"):
        with pytest.raises(SdkError) as raised:
            operation_of(target)
        assert raised.value.code == "UnknownOperationException"


# --- pieces ------------------------------------------------------------------------------------


def test_epoch_seconds_are_truncated_to_milliseconds() -> None:
    assert epoch_seconds(parameter("/a")) == 1772600767.891
    whole = parameter("/a", last_modified=datetime(2026, 3, 4, 5, 6, 7, 999, tzinfo=UTC))
    assert epoch_seconds(whole) == 1772600767 and isinstance(epoch_seconds(whole), int)
    naive = parameter("/a", last_modified=datetime(2026, 3, 4, 5, 6, 7, 500000))
    assert epoch_seconds(naive) == 1772600767.5


def test_held_follows_selectors() -> None:
    assert held(STANDARD, "/app/name") is not None
    assert held(STANDARD, "/app/name:1") is not None
    assert held(STANDARD, "/app/name:2") is None
    assert held(STANDARD, "/pinned") is None
    assert held(STANDARD, "/labelled:stable") is not None
    assert held(STANDARD, "/missing") is None


def test_reply_is_plain_data() -> None:
    reply = answer(STANDARD, "GetParameter", {"Name": "/app/name"})
    assert isinstance(reply, SdkReply) and reply.status == 200
