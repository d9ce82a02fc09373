"""Backward compatibility of JSON Schemas: may a reader of the new schema still take old documents?

A published version is a promise: every document valid under it must stay valid under the
schema now exported for that version. Removed properties, new required properties, narrowed
types, dropped enum values and tighter bounds break the promise; bump the version instead
(and register an upcaster for replays).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


def _resolve(node: Schema, root: Schema) -> Schema:
    seen = 0
    while "$ref" in node and seen < 32:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node, seen = target, seen + 1
    return node


def _branches(node: Schema, root: Schema) -> list[Schema]:
    """The alternatives a value may match: ``anyOf``/``oneOf`` flattened, refs resolved."""
    node = _resolve(node, root)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return [b for sub in node[key] for b in _branches(sub, root)]
    return [node]


def _types(node: Schema) -> set[str]:
    if "type" in node:
        kind = node["type"]
        return set(kind) if isinstance(kind, list) else {kind}
    values = node["enum"] if "enum" in node else [node["const"]] if "const" in node else None
    if values is None:
        return {"any"}
    names = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null",
             list: "array", dict: "object"}
    return {names.get(type(v), "any") for v in values}


def _covers(new: set[str], old: set[str]) -> bool:
    if "any" in new:
        return True
    return all(t in new or (t == "integer" and "number" in new) for t in old)


def _node_problems(old: Schema, new: Schema, old_root: Schema, new_root: Schema, path: str) -> list[str]:
    """Problems between two single (non-union) schemas whose types already match."""
    problems: list[str] = []
    if "const" in new and old.get("const", object()) != new["const"]:
        problems.append(f"{path}: now fixed to {new['const']!r}")
    if "enum" in new:
        before = old.get("enum", [old["const"]] if "const" in old else None)
        if before is None:
            problems.append(f"{path}: now restricted to {new['enum']}")
        elif dropped := [v for v in before if v not in new["enum"]]:
            problems.append(f"{path}: values no longer accepted: {dropped}")
    for key in ("format", "pattern"):
        if key in new and old.get(key) != new[key]:
            problems.append(f"{path}: {key} changed from {old.get(key)!r} to {new[key]!r}")
    for key in _LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            problems.append(f"{path}: {key} raised to {new[key]}")
    for key in _UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            problems.append(f"{path}: {key} lowered to {new[key]}")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_prop in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}: property removed")
        else:
            problems += problems_between(old_prop, new_props[name], old_root, new_root, f"{path}.{name}")
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        problems.append(f"{path}.{name}: new required property")
    old_extra, new_extra = old.get("additionalProperties", True), new.get("additionalProperties", True)
    if new_extra is False and old_extra is not False and ("object" in _types(old) or old_props):
        problems.append(f"{path}: additional properties no longer accepted")
    elif isinstance(old_extra, dict) and isinstance(new_extra, dict):
        problems += problems_between(old_extra, new_extra, old_root, new_root, f"{path}.*")
    if "items" in new:
        if "items" not in old:
            problems.append(f"{path}[]: items now constrained")
        else:
            problems += problems_between(old["items"], new["items"], old_root, new_root, f"{path}[]")
    return problems


def problems_between(old: Schema, new: Schema, old_root: Schema, new_root: Schema, path: str = "$") -> list[str]:
    """Why documents valid under ``old`` may fail ``new`` (empty when ``new`` accepts them all)."""
    problems: list[str] = []
    candidates = _branches(new, new_root)
    for branch in _branches(old, old_root):
        matching = [c for c in candidates if _covers(_types(c), _types(branch))]
        if not matching:
            problems.append(f"{path}: type narrowed, {sorted(_types(branch))} values no longer accepted")
            continue
        found = [_node_problems(branch, c, old_root, new_root, path) for c in matching]
        problems += min(found, key=len)
    return problems


def compatibility_problems(old: Schema, new: Schema) -> list[str]:
    """Entry point for two whole documents (each with its own ``$defs``)."""
    return problems_between(old, new, old, new)
