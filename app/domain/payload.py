"""ChainedJobInfo: validating a submitted job tree at the edge, before anything is stored.

Checks run cheapest first: envelope, then shape and size limits, then each node's own
fields against a flat marshmallow schema, then the job type registry. Every walk is a loop,
never recursion, so no input (and no configured depth limit) can exhaust the stack. Every
error names the path of the bad node, e.g. ``nextJobs[0].nextJobs[1].targetObject``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
# A rejection lists at most this many paths: enough to fix a payload, bounded in size.
MAX_ERRORS = 100
TARGET_FORMAT = (
    'must be "<id>.<TYPE>" or "<TYPE>": id non-empty printable text, '
    "TYPE a letter then letters, digits or _"
)


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
    where: NodePath | None = field(default=None, repr=False, compare=False)

    @property
    def path(self) -> str:
        """Where the node was in the payload, e.g. ``nextJobs[0].nextJobs[1]`` ("" for the
        root)."""
        return str(self.where) if self.where is not None else ""

    def walk(self) -> Iterator[JobSpec]:
        """This node and every descendant, depth-first, without recursion."""
        stack: list[JobSpec] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.next_jobs))


class NodePath:
    """A node's place in the payload, written out only when an error names it: written out
    for every node of a deep chain, paths would be quadratic in its depth (a 10,000-link
    chain's would take gigabytes)."""

    __slots__ = ("index", "parent")

    def __init__(self, parent: NodePath | None, index: int):
        self.parent = parent
        self.index = index

    def __str__(self) -> str:
        indexes: list[int] = []
        node: NodePath | None = self
        while node is not None:
            indexes.append(node.index)
            node = node.parent
        return ".".join(f"nextJobs[{i}]" for i in reversed(indexes))


def _text(path: NodePath | None) -> str:
    return str(path) if path is not None else ""


@dataclass(frozen=True)
class Limits:
    max_depth: int = 10_000
    max_nodes: int = 10_000
    # Deeper parameters could make a whole tree's JSON too deep to encode in a response.
    max_parameter_depth: int = 32

    @property
    def max_json_depth(self) -> int:
        """How deeply a body's arrays and objects may nest: a chain of max_depth links is
        twice that (object, nextJobs list, object, ...), plus an envelope and parameters.
        The body size bounds the rest; this bounds what brackets alone make a decoder build."""
        return 2 * self.max_depth + self.max_parameter_depth + 4


def split_target(target_object: str) -> tuple[str | None, str]:
    """``"155.LPG"`` -> ``("155", "LPG")``; ``"NOOP"`` -> ``(None, "NOOP")``."""
    target_id, dot, job_type = target_object.rpartition(".")
    return (target_id if dot else None), job_type


def _valid_target(value: str) -> None:
    # isprintable() also rules out NUL and lone surrogates, which no database can store.
    target_id, job_type = split_target(value)
    bad_id = target_id is not None and not (target_id and target_id.isprintable())
    if bad_id or not TYPE_NAME.fullmatch(job_type):
        raise ValidationError(TARGET_FORMAT)


class StrictBoolean(fields.Boolean):
    """A JSON true/false; plain Boolean takes 1 and 0.0 too (1 == True in its sets)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictInteger(fields.Integer):
    """A JSON integer; plain strict Integer still takes true and false (bool is an int)."""

    def __init__(self, **kwargs: Any):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        result: int = super()._deserialize(value, attr, data, **kwargs)
        return result


class StrictNumber(fields.Number):
    """A finite JSON number; rejects strings and booleans marshmallow would coerce, and NaN."""

    num_type = float

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        result: float = super()._deserialize(value, attr, data, **kwargs)
        if not math.isfinite(result):
            raise ValidationError("Not a finite number.")
        return result


class NodeSchema(Schema):
    """One node's own fields. Its nextJobs are only checked to be a list here: parse_tree
    validates the children as nodes of their own, in a loop."""

    class Meta:
        unknown = RAISE

    targetObject = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=255), _valid_target],
        metadata={"pattern": r"^(.+\.)?[A-Za-z][A-Za-z0-9_]{0,63}$"},
    )
    parameters = fields.Dict(keys=fields.String(), load_default=dict)
    executeOnError = StrictBoolean(load_default=False)
    maxAttempts = StrictInteger(load_default=1, validate=validate.Range(1, 100))
    timeoutSeconds = StrictNumber(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, min_inclusive=False, max=MAX_TIMEOUT_SECONDS),
        metadata={"exclusiveMinimum": True},
    )
    nextJobs = fields.List(fields.Raw(), load_default=list)


class ChainedJobInfoSchema(NodeSchema):
    """The submitted shape as documented in OpenAPI: nextJobs nests the same shape."""

    nextJobs = fields.List(fields.Nested(lambda: ChainedJobInfoSchema()), load_default=list)


_NODE_SCHEMA = NodeSchema()


ParameterCheck = Callable[[str, Any], dict[str, list[str]]]


def parse_tree(
    body: Any,
    limits: Limits,
    known_type: Callable[[str], bool],
    check_parameters: ParameterCheck | None = None,
) -> JobSpec:
    """Validate a decoded JSON body into a :class:`JobSpec` tree, or raise PayloadError.

    ``check_parameters(job_type, parameters)`` (the registry's, from the job types' schemas)
    returns what it refuses by path within the parameters."""
    nodes = list(_nodes_in_order(unwrap(body), limits))  # shape and size first: cheap
    errors: dict[str, list[str]] = {}
    specs: list[JobSpec | None] = []
    for node, path, parent in nodes:
        spec = _parse_node(node, path, limits, known_type, errors, check_parameters)
        specs.append(spec)
        if spec is not None and parent is not None and (owner := specs[parent]) is not None:
            owner.next_jobs.append(spec)
        if len(errors) >= MAX_ERRORS:
            break
    root = specs[0]
    if errors or root is None:
        raise PayloadError("invalid ChainedJobInfo", dict(list(errors.items())[:MAX_ERRORS]))
    return root


def unwrap(body: Any) -> Any:
    """Accept the bare payload or the JSON-API envelope ``{"data": {...}}``."""
    if isinstance(body, dict) and set(body) == {"data"}:
        return body["data"]
    return body


def _nodes_in_order(
    root: Any, limits: Limits
) -> Iterator[tuple[dict[str, Any], NodePath | None, int | None]]:
    """Yield ``(node, path, parent index)`` in document order, rejecting non-objects and
    over-deep or over-large trees before the children are even queued."""
    stack: list[tuple[Any, NodePath | None, int, int | None]] = [(root, None, 1, None)]
    queued, index = 1, 0
    while stack:
        node, path, depth, parent = stack.pop()
        if not isinstance(node, dict):
            raise PayloadError(
                "invalid ChainedJobInfo", {_text(path) or "$": ["must be a JSON object"]}
            )
        yield node, path, parent
        children = node.get("nextJobs")
        if isinstance(children, list) and children:
            prefix = _join(_text(path), "nextJobs") if depth >= limits.max_depth else ""
            if depth >= limits.max_depth:
                raise PayloadError(
                    "tree too deep",
                    {f"{prefix}[0]": [f"nested deeper than {limits.max_depth} levels"]},
                )
            if queued + len(children) > limits.max_nodes:
                prefix = _join(_text(path), "nextJobs")
                first_over = limits.max_nodes - queued
                raise PayloadError(
                    "tree too large",
                    {f"{prefix}[{first_over}]": [f"more than {limits.max_nodes} jobs in one tree"]},
                )
            queued += len(children)
            stack.extend(
                (child, NodePath(path, i), depth + 1, index)
                for i, child in reversed(list(enumerate(children)))
            )
        index += 1


def _parse_node(
    node: dict[str, Any],
    where: NodePath | None,
    limits: Limits,
    known_type: Callable[[str], bool],
    errors: dict[str, list[str]],
    check_parameters: ParameterCheck | None = None,
) -> JobSpec | None:
    """One node as a JobSpec (children not attached), or None with its problems in errors."""
    try:
        data = _NODE_SCHEMA.load(node)
    except ValidationError as exc:
        errors.update(flatten(exc.messages, _text(where)))
        return None
    found: dict[str, list[str]] = {}
    problem = _parameters_problem(data["parameters"], limits.max_parameter_depth)
    if problem:
        found[_join(_text(where), "parameters")] = [problem]
    target_id, job_type = split_target(data["targetObject"])
    if not known_type(job_type):
        found[_join(_text(where), "targetObject")] = [f"unknown job type {job_type!r}"]
    elif check_parameters is not None and not problem:
        refused = check_parameters(job_type, data["parameters"])
        at = _join(_text(where), "parameters") if refused else ""
        for inner, messages in refused.items():
            found[_join(at, inner) if inner else at] = messages
    if found:
        errors.update(found)
        return None
    return JobSpec(
        target_object=data["targetObject"],
        job_type=job_type,
        target_id=target_id,
        parameters=data["parameters"],
        execute_on_error=data["executeOnError"],
        max_attempts=data["maxAttempts"],
        timeout_seconds=data["timeoutSeconds"],
        where=where,
    )


def _parameters_problem(parameters: dict[str, Any], max_depth: int) -> str | None:
    """Why ``parameters`` cannot be stored and echoed back as JSON, or None."""
    stack: list[tuple[Any, int]] = [(parameters, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN and Infinity are not JSON"
        if isinstance(value, dict | list):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return None


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
