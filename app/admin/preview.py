"""The submit page's preview: a pasted ChainedJobInfo as a tree, each validation error
shown at the node it belongs to. Validation is the submit service's check
(app/services/submit.py: the payload and its joins, as every submission is checked); this
module only lays the raw JSON out and places the messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.domain import jsontext
from app.domain.payload import Limits, PayloadError, unwrap
from app.runtime import Runtime
from app.services.submit import CheckedChain, SubmitService

# More nodes than this are validated but not all drawn.
MAX_SHOWN = 500


@dataclass
class PreviewNode:
    path: str
    depth: int
    target: str
    parameters: Any
    execute_on_error: Any
    errors: list[str] = field(default_factory=list)


@dataclass
class Preview:
    nodes: list[PreviewNode] = field(default_factory=list)
    # Problems of the document itself (not JSON, not an object) and of unshown nodes.
    errors: list[str] = field(default_factory=list)
    total: int = 0
    chain: CheckedChain | None = None

    @property
    def valid(self) -> bool:
        return self.chain is not None

    def add_problems(self, details: dict[str, list[str]]) -> None:
        """Show each message at the node its path is in (see ``_place``)."""
        _place(details, self)


def check(rt: Runtime, text: str) -> Preview:
    """Parse and validate ``text`` exactly as POST /api/v1/jobs would, storing nothing."""
    preview = Preview()
    if not text.strip():
        preview.errors.append("Paste or upload a ChainedJobInfo JSON document.")
        return preview
    service = SubmitService.for_runtime(rt)
    try:
        body = jsontext.loads(text, max_depth=service.limits.max_json_depth)
    except ValueError as exc:
        preview.errors.append(f"not valid JSON: {exc}")
        return preview
    _lay_out(unwrap(body), preview, service.limits)
    try:
        preview.chain = service.check(body)
    except PayloadError as exc:
        preview.add_problems(exc.details)
    return preview


def _lay_out(root: Any, preview: Preview, limits: Limits) -> None:
    """The raw nodes in document order, as deep and as many as the limits allow."""
    stack: list[tuple[Any, str, int]] = [(root, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        preview.total += 1
        if len(preview.nodes) >= MAX_SHOWN or preview.total > limits.max_nodes:
            continue
        if not isinstance(node, dict):
            preview.nodes.append(PreviewNode(path, depth, "(not an object)", None, None))
            continue
        target = node.get("targetObject")
        preview.nodes.append(
            PreviewNode(
                path,
                depth,
                target if isinstance(target, str) else "(no targetObject)",
                node.get("parameters"),
                node.get("executeOnError"),
            )
        )
        children = node.get("nextJobs")
        if isinstance(children, list) and depth < limits.max_depth:
            prefix = f"{path}.nextJobs" if path else "nextJobs"
            stack.extend(
                (child, f"{prefix}[{i}]", depth + 1)
                for i, child in reversed(list(enumerate(children)))
            )


def _place(details: dict[str, list[str]], preview: Preview) -> None:
    """Attach each message to the node its path is in (``nextJobs[0].targetObject`` belongs
    to ``nextJobs[0]``), naming the field; messages of unshown nodes go on top."""
    by_path = {node.path: node for node in preview.nodes}
    for path, messages in details.items():
        where = "" if path == "$" else path
        node_path = where
        while node_path not in by_path and node_path:
            node_path = _parent_path(node_path)
        owner = by_path.get(node_path)
        suffix = where[len(node_path) :].lstrip(".")
        unshown = owner is None or "nextJobs[" in suffix
        for message in messages:
            if unshown or owner is None:
                preview.errors.append(f"{path}: {message}")
            else:
                owner.errors.append(f"{suffix}: {message}" if suffix else message)


def _parent_path(path: str) -> str:
    """``a.b[2]`` -> ``a.b`` -> ``a`` -> ``""``: always shorter, so a walk up ends."""
    if path.endswith("]") and "[" in path:
        return path[: path.rindex("[")]
    return path[: max(path.rfind("."), 0)]
