"""JSON Schema of the loss config, derived from the attrs config classes, for editor completion."""

from __future__ import annotations

import types
import typing
from typing import Any

import attrs

from distill_core.config.converter import converter
from distill_core.config.groups import GroupConfig
from distill_core.config.schedules import SCHEDULES, UpdateSchedule, Weight
from distill_core.loss.balancer import BalancerConfig
from distill_core.registry import recipes
from distill_core.registry.discovery import get_registry
from distill_core.terms.declared import declared_outputs, is_stateful
from distill_core.terms.pit import PITConfig

_SIMPLE = {
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    str: {"type": "string"},
    type(None): {"type": "null"},
}


def type_schema(t: Any) -> dict[str, Any]:
    """The schema of one annotated type."""
    if t in _SIMPLE:
        return dict(_SIMPLE[t])
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [type_schema(a) for a in args]}
    if origin is tuple and args and args[-1] is not Ellipsis:  # a fixed length: each place its own type
        places = [type_schema(a) for a in args]
        return {"type": "array", "prefixItems": places, "items": False, "minItems": len(args), "maxItems": len(args)}
    if origin in (tuple, list):
        items = args[0] if args else Any
        return {"type": "array", "items": type_schema(items) if items is not Any else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1]) if len(args) > 1 else {}}
    if attrs.has(t):
        kind = next((k for k, c in SCHEDULES.items() if c is t), None)
        return class_schema(t, tag=("schedule", kind) if kind is not None else None)
    return {}


SCHEMA_HOOK = "__distill_json_schema__"


def class_schema(cls: type, tag: tuple[str, str] | None = None) -> dict[str, Any]:
    """An object schema for an attrs class: its fields, types, defaults; no other keys. A class that defines
    the classmethod ``__distill_json_schema__(schema)`` is handed that schema and returns its own (e.g. a
    tagged union whose variants only the plugin that owns the class knows)."""
    schema = fields_schema(cls, tag)
    refine = getattr(cls, SCHEMA_HOOK, None)
    if refine is None:
        return schema
    refined = refine(schema)
    if not isinstance(refined, dict):
        raise TypeError(f"{cls.__qualname__}.{SCHEMA_HOOK} returned {type(refined).__name__}, expected a dict")
    return refined


def fields_schema(cls: type, tag: tuple[str, str] | None = None) -> dict[str, Any]:
    """The schema read off an attrs class's fields alone (what ``__distill_json_schema__`` is handed)."""
    defaults = converter.unstructure(cls()) if all(a.default is not attrs.NOTHING for a in attrs.fields(cls)) else {}
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    if tag:
        props[tag[0]] = {"const": tag[1]}
    for a in attrs.fields(cls):
        schema = type_schema(hints.get(a.name, a.type))
        if a.name in defaults and defaults[a.name] is not None:
            schema["default"] = defaults[a.name]
        props[a.name] = schema
    out: dict[str, Any] = {"type": "object", "title": cls.__name__, "properties": props, "additionalProperties": False}
    if cls.__doc__:
        out["description"] = cls.__doc__.strip().splitlines()[0]
    if tag:
        out["required"] = [tag[0]]
    return out


def term_schema(name: str) -> dict[str, Any]:
    """The schema of one installed term's config section."""
    return class_schema(get_registry().get(name).config_class)


def config_schema() -> dict[str, Any]:
    """The schema of a whole loss config file, for every term installed now."""
    binding = {
        "term": {"type": "string", "description": "the registered term this entry instantiates"},
        "inputs": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "logical input -> batch key",
        },
        "pit": class_schema(PITConfig),
    }
    terms = {}
    for name, info in sorted(get_registry().terms.items()):
        schema = class_schema(info.config_class)
        schema["properties"].update(binding)
        outputs = declared_outputs(info.cls)
        if outputs:
            schema["properties"]["outputs"] = {
                "type": "object",
                "properties": {o: type_schema(Weight) for o in outputs},
                "additionalProperties": False,
                "description": "each output's weight (a number or a schedule) over the term's defaults",
            }
        if is_stateful(info.cls):
            schema["properties"]["update"] = class_schema(UpdateSchedule)
        terms[name] = schema
    group = class_schema(GroupConfig)
    group["properties"]["members"] = {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}},
        ],
        "description": "member terms: a list (each weighted 1) or a table of term = weight inside the group",
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "distill loss config",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "recipe": {"enum": list(recipes.recipes()), "default": recipes.DEFAULT},
            "terms": {
                "type": "object",
                "properties": terms,  # named instances: any name with a term =
                "additionalProperties": {"type": "object", "required": ["term"], "properties": binding},
            },
            "batch": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": 'batch key -> layout, e.g. "B, C, N"',
            },
            "balancer": class_schema(BalancerConfig),
            "groups": {"type": "object", "additionalProperties": group},
            "fallback": {"type": ["string", "null"]},
            "required_plugins": {"type": "array", "items": {"type": "string"}},
        },
    }
