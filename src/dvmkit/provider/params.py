"""Bind a job's params to a handler's typed signature, and describe that signature.

Like FastAPI, the signature is read once when the handler is registered: each parameter
becomes a param bound by name from the request's ``param`` tags, converted to its annotation,
with its default; the same reading produces the JSON Schema published in announcements.

Reserved names: ``input`` receives the first input's data (content for a request without
``i`` tags), ``inputs`` all of them; a parameter annotated :class:`~dvmkit.provider.job.Job`
(any name) receives the job context. Supported annotations: ``str``, ``int``, ``float``,
``bool``, ``Literal[...]`` of strings, ``list[str]``/``list[int]``/``list[float]`` (repeated
``param`` values), and ``X | None`` of those.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dvmkit.errors import JobError

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
RESERVED = frozenset({"input", "inputs"})


@dataclass(frozen=True, slots=True)
class Param:
    """One handler parameter bound from ``param`` tags."""

    name: str
    base: type  # str, int, float or bool
    many: bool  # list[...]: every value of the repeated param
    optional: bool  # X | None
    choices: tuple[str, ...] | None
    default: Any
    required: bool

    def schema(self) -> dict[str, Any]:
        item: dict[str, Any] = {"type": _JSON_TYPES[self.base]}
        if self.choices is not None:
            item["enum"] = list(self.choices)
        out: dict[str, Any] = {"type": "array", "items": item} if self.many else item
        if not self.required and self.default is not None:
            out["default"] = list(self.default) if self.many else self.default
        return out

    def convert(self, values: Sequence[str]) -> Any:
        """Raises: JobError INVALID_PARAMETER with the param name and what was expected."""
        if not self.many and len(values) != 1:
            raise JobError("INVALID_PARAMETER", f"param {self.name!r} takes exactly one value")
        converted = [self._one(v) for v in values]
        return converted if self.many else converted[0]

    def _one(self, value: str) -> Any:
        if self.choices is not None and value not in self.choices:
            raise JobError(
                "INVALID_PARAMETER",
                f"param {self.name!r} must be one of {', '.join(self.choices)}; got {value[:64]!r}",
            )
        if self.base is str:
            return value
        if self.base is bool:
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise JobError("INVALID_PARAMETER", f"param {self.name!r} must be true or false")
        try:
            number = self.base(value.strip())
        except ValueError:
            kind = "an integer" if self.base is int else "a number"
            raise JobError(
                "INVALID_PARAMETER", f"param {self.name!r} must be {kind}; got {value[:64]!r}"
            ) from None
        if self.base is float and (number != number or number in (float("inf"), float("-inf"))):
            raise JobError("INVALID_PARAMETER", f"param {self.name!r} must be a finite number")
        return number


@dataclass(frozen=True, slots=True)
class Signature:
    """What a handler takes: its params, and where the input and the job context go."""

    params: tuple[Param, ...]
    input_name: str | None  # parameter receiving the first input's data
    inputs_name: str | None  # parameter receiving every input
    job_name: str | None  # parameter receiving the Job context

    def schema(self) -> dict[str, Any]:
        """JSON Schema of the params, as announcements publish it."""
        return {
            "type": "object",
            "properties": {p.name: p.schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }

    def bind(self, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """Convert the request's params into keyword arguments for the handler.

        Raises:
            JobError: MISSING_PARAMETER for a required param that is absent, INVALID_PARAMETER
                for one that does not convert or a param the handler does not take.
        """
        known = {p.name for p in self.params}
        unknown = sorted(set(params) - known)
        if unknown:
            accepted = ", ".join(sorted(known)) or "none"
            raise JobError(
                "INVALID_PARAMETER",
                f"unknown param {unknown[0][:64]!r}; this DVM accepts: {accepted}",
            )
        kwargs: dict[str, Any] = {}
        for p in self.params:
            values = params.get(p.name)
            if values is None:
                if p.required:
                    raise JobError("MISSING_PARAMETER", f"param {p.name!r} is required")
                kwargs[p.name] = list(p.default) if p.many and p.default is not None else p.default
            else:
                kwargs[p.name] = p.convert(values)
        return kwargs


def read_signature(func: Callable[..., Any], *, job_type: type) -> Signature:
    """Read ``func``'s signature once, at registration.

    Raises:
        TypeError: a parameter has no annotation, or one dvmkit cannot bind (a programming
            error, reported when the handler is registered rather than at the first job).
    """
    hints = typing.get_type_hints(func)
    params: list[Param] = []
    input_name = inputs_name = job_name = None
    for name, parameter in inspect.signature(func).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"{func.__name__}: *args and **kwargs cannot be bound to params")
        hint = hints.get(name)
        if hint is job_type:
            job_name = name
            continue
        if name == "input":
            input_name = name
            continue
        if name == "inputs":
            inputs_name = name
            continue
        if hint is None:
            raise TypeError(f"{func.__name__}: parameter {name!r} needs a type annotation")
        params.append(_param(func.__name__, name, hint, parameter.default))
    return Signature(tuple(params), input_name, inputs_name, job_name)


def _param(owner: str, name: str, hint: Any, default: Any) -> Param:
    optional = False
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"{owner}: parameter {name!r} has an unsupported union {hint!r}")
        hint, optional = rest[0], True
    many = False
    if typing.get_origin(hint) is list:
        (hint,) = typing.get_args(hint) or (str,)
        many = True
    choices: tuple[str, ...] | None = None
    if typing.get_origin(hint) is typing.Literal:
        literal = typing.get_args(hint)
        if not all(isinstance(v, str) for v in literal):
            raise TypeError(f"{owner}: Literal parameter {name!r} must list strings")
        choices, hint = tuple(literal), str
    if hint not in _JSON_TYPES:
        raise TypeError(f"{owner}: parameter {name!r} has unsupported type {hint!r}")
    has_default = default is not inspect.Parameter.empty
    return Param(
        name=name,
        base=hint,
        many=many,
        optional=optional,
        choices=choices,
        default=default if has_default else None,
        required=not has_default and not optional,
    )
