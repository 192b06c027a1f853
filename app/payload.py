"""ChainedJobInfo: validating a submitted job tree at the edge, before anything is stored.

Checks run cheapest first: envelope, then shape and size limits by an iterative walk (so
no input can drive recursion deep), then the marshmallow schema, then the job type
registry. Every error names the path of the bad node, e.g.
``nextJobs[0].nextJobs[1].targetObject``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600


class PayloadError(Exception):
    """A rejected payload: ``details`` maps node paths to lists of messages."""

    def __init__(self, message: str, details: dict[str, list[str]], status: int = 400):
        super().__init__(message)
        self.message = message
        self.details = details
        self.status = status


@dataclass
class JobSpec:
    """One validated node of a submitted tree."""

    target_object: str
    job_type: str
    target_id: str | None
    parameters: dict[str, Any] = field(default_factory=dict)
    execute_on_error: bool = False
    max_attempts: int = 1
    timeout_seconds: float | None = None
    next_jobs: list[JobSpec] = field(default_factory=list)
    path: str = ""

    def walk(self) -> Iterator[JobSpec]:
        """This node and every descendant, depth-first, without recursion."""
        stack: list[JobSpec] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.next_jobs))


def split_target(target_object: str) -> tuple[str | None, str]:
    """``"155.LPG"`` -> ``("155", "LPG")``; ``"NOOP"`` -> ``(None, "NOOP")``."""
    target_id, dot, job_type = target_object.rpartition(".")
    return (target_id if dot else None), job_type


def _valid_target(value: str) -> None:
    target_id, job_type = split_target(value)
    if target_id == "" or not TYPE_NAME.match(job_type):
        raise ValidationError(
            'must be "<id>.<TYPE>" or "<TYPE>", TYPE a letter then letters, digits or _'
        )


class StrictNumber(fields.Number):
    """A JSON number; rejects strings and booleans that marshmallow would coerce."""

    num_type = float

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("Not a valid number.")
        return super()._deserialize(value, attr, data, **kwargs)


class ChainedJobInfoSchema(Schema):
    """The submitted shape; ``nextJobs`` nests the same shape to any (bounded) depth."""

    class Meta:
        unknown = RAISE

    targetObject = fields.String(
        required=True, validate=[validate.Length(min=1, max=255), _valid_target]
    )
    parameters = fields.Dict(keys=fields.String(), load_default=dict)
    executeOnError = fields.Boolean(truthy={True}, falsy={False}, load_default=False)
    maxAttempts = fields.Integer(strict=True, load_default=1, validate=validate.Range(1, 100))
    timeoutSeconds = StrictNumber(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, min_inclusive=False, max=MAX_TIMEOUT_SECONDS),
    )
    nextJobs = fields.List(fields.Nested(lambda: ChainedJobInfoSchema()), load_default=list)

    @post_load
    def to_spec(self, data: dict[str, Any], **_: Any) -> JobSpec:
        target_id, job_type = split_target(data["targetObject"])
        return JobSpec(
            target_object=data["targetObject"],
            job_type=job_type,
            target_id=target_id,
            parameters=data["parameters"],
            execute_on_error=data["executeOnError"],
            max_attempts=data["maxAttempts"],
            timeout_seconds=data["timeoutSeconds"],
            next_jobs=data["nextJobs"],
        )


@dataclass(frozen=True)
class Limits:
    max_depth: int = 64
    max_nodes: int = 10_000


def parse_tree(body: Any, limits: Limits, known_type: Callable[[str], bool]) -> JobSpec:
    """Validate a decoded JSON body into a :class:`JobSpec` tree, or raise PayloadError."""
    root = unwrap(body)
    _check_shape(root, limits)
    try:
        spec: JobSpec = ChainedJobInfoSchema().load(root)
    except ValidationError as exc:
        raise PayloadError("invalid ChainedJobInfo", flatten(exc.messages)) from None
    _assign_paths(spec)
    unknown = {
        _join(node.path, "targetObject"): [f"unknown job type {node.job_type!r}"]
        for node in spec.walk()
        if not known_type(node.job_type)
    }
    if unknown:
        raise PayloadError("unknown job type", unknown)
    return spec


def unwrap(body: Any) -> Any:
    """Accept the bare payload or the JSON-API envelope ``{"data": {...}}``."""
    if isinstance(body, dict) and set(body) == {"data"}:
        return body["data"]
    return body


def _check_shape(root: Any, limits: Limits) -> None:
    """Reject non-objects, over-deep and over-large trees without recursing."""
    stack: list[tuple[Any, str, int]] = [(root, "", 1)]
    count = 0
    while stack:
        node, path, depth = stack.pop()
        if not isinstance(node, dict):
            raise PayloadError("invalid ChainedJobInfo", {path or "$": ["must be a JSON object"]})
        count += 1
        if count > limits.max_nodes:
            raise PayloadError(
                "tree too large", {"$": [f"more than {limits.max_nodes} jobs in one submission"]}
            )
        children = node.get("nextJobs", [])
        if not isinstance(children, list) or not children:
            continue
        if depth >= limits.max_depth:
            raise PayloadError(
                "tree too deep",
                {_join(path, "nextJobs"): [f"nesting deeper than {limits.max_depth} levels"]},
            )
        for index, child in enumerate(children):
            stack.append((child, f"{_join(path, 'nextJobs')}[{index}]", depth + 1))


def _assign_paths(root: JobSpec) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        for index, child in enumerate(node.next_jobs):
            child.path = f"{_join(node.path, 'nextJobs')}[{index}]"
            stack.append(child)


def flatten(messages: Any, path: str = "") -> dict[str, list[str]]:
    """Marshmallow's nested error dict -> ``{"nextJobs[0].targetObject": [...]}``."""
    if isinstance(messages, list):
        return {path or "$": [str(m) for m in messages]}
    flat: dict[str, list[str]] = {}
    for key, value in messages.items():
        if isinstance(key, int):
            child = f"{path}[{key}]"
        elif key == "_schema":
            child = path
        else:
            child = _join(path, str(key))
        flat.update(flatten(value, child))
    return flat


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
