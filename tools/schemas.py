"""Lean JSON schemas for tools/list: what a host needs to validate, little else.

Pydantic's schemas carry `$defs`/`$ref` (which some hosts reject), a `title` per field
and `anyOf: [X, {type: null}]` per optional field; across the seven tools that is most
of tools/list, read by every agent on every session. One rewrite serves every tool.
"""

from __future__ import annotations

from typing import Any

_NULL = {"type": "null"}
_DOC_ONLY = ("description", "default", "enum")  # in a result: documentation, not shape
_STRUCTURE = {"$ref", "properties", "additionalProperties", "items"}  # what makes a field more than a scalar
_BRANCHES = ("anyOf", "oneOf", "allOf")  # where a field's alternatives are


def lean(schema: dict[str, Any], *, nullable: bool) -> dict[str, Any]:
    """`schema` with `$ref`s inlined, titles, null defaults and (unless `nullable`) null branches dropped.

    Input schemas pass `nullable=False`: an optional argument is simply left out. Output
    schemas keep null as a type (`["string", "null"]`), so what the tool returns still
    validates, and lose descriptions, defaults and enums (documentation, not shape; enums in
    results are open anyway): the field names, `guidance` and `how_to_use` speak for themselves."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            extra = {k: v for k, v in node.items() if k != "$ref"}
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            if nullable and _flat_record(target):  # e.g. guidance: each result names its own fields
                return {"type": "object"}
            return walk(target | extra)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("title", "$defs") or (key == "default" and value is None) or (nullable and key in _DOC_ONLY):
                continue
            out[key] = {name: walk(sub) for name, sub in value.items()} if key == "properties" else walk(value)
        return _drop_null_branch(out, nullable)

    if nullable:  # a result's own description repeats the tool's
        return walk(schema)
    return walk(schema) | ({"description": schema["description"]} if "description" in schema else {})


def _flat_record(node: dict[str, Any]) -> bool:
    """A model of scalar fields only (guidance, an error, a warning): in a result schema it is
    shown as `object`, since the result itself names its fields, rather than repeated in full in
    every tool that returns a solve."""
    fields = node.get("properties")
    return bool(fields) and all(_scalar(field) for field in fields.values())


def _scalar(field: dict[str, Any]) -> bool:
    """A field with no structure of its own: no model reference, object or array, in any branch of it."""
    return not _STRUCTURE & field.keys() and all(_scalar(branch) for key in _BRANCHES for branch in field.get(key, ()))


def _drop_null_branch(node: dict[str, Any], nullable: bool) -> dict[str, Any]:
    """`anyOf: [X, null]` read simply: X (inputs), or X with null added to its type (outputs)."""
    branches = node.get("anyOf")
    if not branches or _NULL not in branches:
        return node
    rest = [b for b in branches if b != _NULL]
    if len(rest) > 1:  # a real union stays a union
        node["anyOf"] = rest if not nullable else rest + [_NULL]
        return node
    (only,) = rest
    merged = {k: v for k, v in node.items() if k != "anyOf"} | only
    if nullable:
        if isinstance(merged.get("type"), str):
            merged["type"] = [merged["type"], "null"]
        else:  # no simple type to widen: keep the explicit union
            return node
    return merged
