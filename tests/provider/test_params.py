"""Handler signatures: params bound by name, converted, described as JSON Schema."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvmkit.errors import JobError
from dvmkit.provider.params import read_signature


class FakeJob:
    """Stands for the Job context type: only its identity matters to the binder."""


def handler(
    input: str,
    job: FakeJob,
    count: int,
    lang: Literal["en", "es"] = "en",
    ratio: float = 1.5,
    loud: bool = False,
    tags: list[str] | None = None,
    note: str | None = None,
) -> str:
    return input


SIG = read_signature(handler, job_type=FakeJob)


def test_reserved_and_job_parameters_are_not_params() -> None:
    assert SIG.input_name == "input"
    assert SIG.job_name == "job"
    assert SIG.inputs_name is None
    assert [p.name for p in SIG.params] == ["count", "lang", "ratio", "loud", "tags", "note"]


def test_schema_describes_types_defaults_choices_and_required() -> None:
    assert SIG.schema() == {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "lang": {"type": "string", "enum": ["en", "es"], "default": "en"},
            "ratio": {"type": "number", "default": 1.5},
            "loud": {"type": "boolean", "default": False},
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {"type": "string"},
        },
        "required": ["count"],
        "additionalProperties": False,
    }


def test_bind_converts_and_fills_defaults() -> None:
    kwargs = SIG.bind({"count": ["3"], "loud": ["Yes"], "tags": ["a", "b"], "ratio": ["2"]})
    assert kwargs == {
        "count": 3,
        "lang": "en",
        "ratio": 2.0,
        "loud": True,
        "tags": ["a", "b"],
        "note": None,
    }


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({}, "MISSING_PARAMETER", "'count' is required"),
        ({"count": ["x"]}, "INVALID_PARAMETER", "'count' must be an integer"),
        ({"count": ["1", "2"]}, "INVALID_PARAMETER", "exactly one value"),
        ({"count": ["1"], "lang": ["fr"]}, "INVALID_PARAMETER", "one of en, es"),
        ({"count": ["1"], "ratio": ["nan"]}, "INVALID_PARAMETER", "finite number"),
        ({"count": ["1"], "ratio": ["1e999"]}, "INVALID_PARAMETER", "finite number"),
        ({"count": ["1"], "loud": ["maybe"]}, "INVALID_PARAMETER", "true or false"),
        ({"count": ["1"], "colour": ["red"]}, "INVALID_PARAMETER", "unknown param 'colour'"),
    ],
)
def test_bad_params_get_the_right_code(
    params: dict[str, list[str]], code: str, message: str
) -> None:
    with pytest.raises(JobError, match=message) as info:
        SIG.bind(params)
    assert info.value.code == code


values = st.lists(st.text(max_size=20), max_size=3)


@given(st.dictionaries(st.sampled_from(["count", "lang", "loud", "x"]) | st.text(), values))
def test_any_params_bind_or_fail_with_a_job_error(params: dict[str, list[str]]) -> None:
    code = None
    try:
        kwargs = SIG.bind(params)
    except JobError as exc:
        code = exc.code
    if code is None:
        assert isinstance(kwargs["count"], int)
    else:
        assert code in {"MISSING_PARAMETER", "INVALID_PARAMETER"}


def test_unsupported_signatures_fail_at_registration() -> None:
    def no_annotation(x) -> str:  # type: ignore[no-untyped-def]
        return ""

    def bad_type(x: dict[str, str]) -> str:
        return ""

    def varargs(*x: str) -> str:
        return ""

    def int_literal(x: Literal[1, 2]) -> str:
        return ""

    for func, message in (
        (no_annotation, "needs a type annotation"),
        (bad_type, "unsupported type"),
        (varargs, r"\*args"),
        (int_literal, "must list strings"),
    ):
        with pytest.raises(TypeError, match=message):
            read_signature(func, job_type=FakeJob)
