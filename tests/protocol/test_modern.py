"""The modern dialect: kind 25000 statuses, results, errors and cancellations."""

from __future__ import annotations

from typing import Any

import nostr_sdk
import pytest

from dvmkit.errors import ProtocolError
from dvmkit.nostr.event import sign_event
from dvmkit.protocol.job import ErrorCode, JobRequest, StatusKind, parse_request
from dvmkit.protocol.modern import (
    cancel_event,
    is_cancel,
    modern_result_event,
    modern_status_event,
)
from dvmkit.protocol.response import result_event, status_event

from .sdk import CUSTOMER, NOW, OTHER, PROVIDER, checked_by_sdk, sdk_event

ME = PROVIDER.public_key


def _request(*extra: list[str]) -> JobRequest:
    tags = [["category", "translation"], ["t", "translation"], ["param", "language", "es"]]
    return parse_request(
        sdk_event(CUSTOMER, kind=25000, tags=[*tags, *extra], content="Hello"), provider=ME
    )


def test_error_codes_are_the_1941_set_plus_ours() -> None:
    assert [code.value for code in ErrorCode] == [
        "BAD_REQUEST",
        "INVALID_PARAMETER",
        "MISSING_PARAMETER",
        "RATE_LIMITED",
        "SERVICE_UNAVAILABLE",
        "UNAUTHORIZED",
        "PAYMENT_FAILED",
        "PAYMENT_TIMEOUT",
        "POLICY_VIOLATION",
        "TIMEOUT",
        "INTERNAL_ERROR",
    ]
    assert [s.value for s in StatusKind] == [
        "offer",
        "payment-required",
        "processing",
        "partial",
        "success",
        "error",
        "cancelled",
    ]


def test_status_tags_per_status() -> None:
    req = _request()
    head = [("e", req.id), ("p", CUSTOMER.public_key), ("category", "translation")]
    cases: list[tuple[StatusKind, dict[str, Any], list[tuple[str, ...]]]] = [
        (StatusKind.PROCESSING, {}, [("status", "processing")]),
        (
            StatusKind.PROCESSING,
            {"message": "warming up"},
            [("status", "processing", "warming up")],
        ),
        (StatusKind.PARTIAL, {"content": "Hol"}, [("status", "partial")]),
        (
            StatusKind.ERROR,
            {"code": ErrorCode.MISSING_PARAMETER, "message": "param 'language' is required"},
            [("status", "error", "MISSING_PARAMETER", "param 'language' is required")],
        ),
        (StatusKind.ERROR, {"code": "RATE_LIMITED"}, [("status", "error", "RATE_LIMITED", "")]),
        (
            StatusKind.OFFER,
            {"amount_msat": 5000, "eta_seconds": 3},
            [("status", "offer"), ("amount", "5000"), ("eta", "3")],
        ),
        (
            StatusKind.PAYMENT_REQUIRED,
            {"amount_msat": 5000, "bolt11": "lnbc50n1x", "methods": ["bolt11", "cashu", "bolt11"]},
            [
                ("status", "payment-required"),
                ("amount", "5000", "lnbc50n1x"),
                ("payment", "bolt11"),
                ("payment", "cashu"),
            ],
        ),
        (StatusKind.CANCELLED, {}, [("status", "cancelled")]),
    ]
    for status, kwargs, tail in cases:
        event = modern_status_event(req, status, provider=ME, created_at=NOW, **kwargs)
        assert event.kind == 25000
        assert event.pubkey == ME
        assert event.tags == (*head, *tail)
        assert event.content == kwargs.get("content", "")
        theirs = checked_by_sdk(event, PROVIDER)
        assert theirs.kind().is_ephemeral()


def test_result_is_a_success_whose_content_is_the_result() -> None:
    req = _request()
    event = modern_result_event(req, "Hola", provider=ME, created_at=NOW, amount_msat=10)
    assert event.content == "Hola"
    assert event.tags == (
        ("e", req.id),
        ("p", CUSTOMER.public_key),
        ("category", "translation"),
        ("status", "success"),
        ("amount", "10"),
    )
    assert result_event(req, "Hola", provider=ME, created_at=NOW).tags[-1] == ("status", "success")


def test_targeted_request_without_category_gets_no_category_tag() -> None:
    req = parse_request(sdk_event(CUSTOMER, kind=25000, tags=[["p", ME]], content="x"))
    event = status_event(req, StatusKind.PROCESSING, provider=ME, created_at=NOW)
    assert event.tags == (("e", req.id), ("p", CUSTOMER.public_key), ("status", "processing"))


@pytest.mark.parametrize(
    ("status", "kwargs", "fragment"),
    [
        (StatusKind.ERROR, {}, "needs an error code"),
        (StatusKind.OFFER, {}, "offer needs amount_msat"),
        (StatusKind.PAYMENT_REQUIRED, {"methods": ["bolt11"]}, "needs amount_msat"),
        (StatusKind.OFFER, {"amount_msat": 1, "eta_seconds": -1}, "eta_seconds"),
        ("done", {}, "unknown job status 'done'"),
    ],
)
def test_status_refuses_incomplete_statuses(
    status: str, kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        status_event(_request(), status, provider=ME, created_at=NOW, **kwargs)


def test_each_dialect_is_answered_in_its_own_form() -> None:
    legacy = parse_request(sdk_event(CUSTOMER, kind=5050, tags=[["i", "hi", "text"]]))
    with pytest.raises(ProtocolError, match="legacy request"):
        modern_status_event(legacy, StatusKind.PROCESSING, provider=ME, created_at=NOW)
    for status in StatusKind:
        kwargs: dict[str, Any] = {"code": "BAD_REQUEST", "amount_msat": 1}
        assert status_event(_request(), status, provider=ME, created_at=NOW, **kwargs).kind == 25000
        if status is not StatusKind.OFFER:
            assert status_event(legacy, status, provider=ME, created_at=NOW, **kwargs).kind == 7000


def test_modern_cancel_names_the_request_and_its_provider() -> None:
    request = sdk_event(CUSTOMER, kind=25000, tags=[["p", ME], ["t", "echo"]], content="x")
    unsigned = cancel_event(request, created_at=NOW + 1)
    assert unsigned.pubkey == CUSTOMER.public_key
    assert unsigned.kind == 25000
    assert unsigned.tags == (("e", request.id), ("status", "cancel"), ("p", ME))
    cancel = unsigned.sign(CUSTOMER)
    checked_by_sdk(unsigned, CUSTOMER)
    assert is_cancel(cancel, parse_request(request))


def test_open_request_cancel_tells_the_chosen_provider() -> None:
    request = sdk_event(CUSTOMER, kind=25000, tags=[["t", "echo"]], content="x")
    unsigned = cancel_event(request, created_at=NOW, providers=[ME, "junk"])
    assert unsigned.tags == (("e", request.id), ("status", "cancel"), ("p", ME))


def test_legacy_cancel_is_a_nip09_deletion() -> None:
    request = sdk_event(CUSTOMER, kind=5002, tags=[["i", "x", "text"], ["p", ME]])
    unsigned = cancel_event(request, created_at=NOW)
    assert unsigned.kind == 5
    assert unsigned.tags == (("e", request.id), ("k", "5002"), ("p", ME))
    theirs = checked_by_sdk(unsigned, CUSTOMER)
    assert theirs.kind().as_std() == nostr_sdk.KindStandard.EVENT_DELETION
    assert is_cancel(unsigned.sign(CUSTOMER), parse_request(request))


def test_a_deletion_built_by_nostr_sdk_cancels_the_job() -> None:
    request = sdk_event(CUSTOMER, kind=5002, tags=[["i", "x", "text"]])
    deletion = sdk_event(CUSTOMER, kind=5, tags=[["e", request.id], ["k", "5002"]])
    assert is_cancel(deletion, parse_request(request))


def test_only_the_customer_can_cancel_and_only_its_own_request() -> None:
    request = sdk_event(CUSTOMER, kind=25000, tags=[["t", "echo"]], content="x")
    req = parse_request(request)
    forged = sign_event(OTHER, kind=5, tags=[["e", request.id]], created_at=NOW)
    assert not is_cancel(forged, req)
    other_job = sign_event(CUSTOMER, kind=5, tags=[["e", "cd" * 32]], created_at=NOW)
    assert not is_cancel(other_job, req)
    # A provider's `cancelled` status and a customer's non-cancel status are not cancels.
    status = status_event(req, StatusKind.CANCELLED, provider=ME, created_at=NOW).sign(PROVIDER)
    assert not is_cancel(status, req)
    chatter = sign_event(
        CUSTOMER, kind=25000, tags=[["e", request.id], ["status", "processing"]], created_at=NOW
    )
    assert not is_cancel(chatter, req)
    note = sign_event(CUSTOMER, kind=1, tags=[["e", request.id]], created_at=NOW)
    assert not is_cancel(note, req)


def test_cancel_of_a_non_request_is_refused() -> None:
    with pytest.raises(ProtocolError, match="nothing to cancel"):
        cancel_event(sdk_event(CUSTOMER, kind=1), created_at=NOW)
