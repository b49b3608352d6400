"""Configs: the one cattrs converter, strict value hooks, readable error paths, and file load/dump."""

from __future__ import annotations

import math
import os
import re
import reprlib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Union

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    StructureHandlerNotFoundError,
)

from distill_core.config.schedules import SCHEDULES
from distill_core.files.atomic import atomic_write_text

Problem = tuple[str, str]  # (dotted path, reason)
MAX_CONFIG_BYTES = 1_000_000
SUFFIXES = (".toml", ".json", ".yaml", ".yml")


class ConfigError(ValueError):
    """A config a user wrote is invalid: carries every problem at once, each with its full path."""

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        self.problems: list[Problem] = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"  {p}: {r}" if p else f"  {r}" for p, r in self.problems]
        super().__init__(
            f"invalid loss config{where} ({len(self.problems)} problem"
            f"{'s' if len(self.problems) != 1 else ''}):\n" + "\n".join(lines)
        )

    def one_line(self) -> str:
        """The message on one line: ``invalid loss config in FILE: path: reason; path: reason``."""
        where = f" in {self.source}" if self.source else ""
        return f"invalid loss config{where}: " + "; ".join(f"{p}: {r}" if p else r for p, r in self.problems)


class InvalidConfig(ValueError):
    """Raised from a config class's own checks (``__attrs_post_init__``) with every problem it found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{p}: {r}" for p, r in self.problems))


def join(path: str, key: str | int) -> str:
    """Append a field name or index to a dotted config path."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """A short hint naming the closest valid option, or ''."""
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _BoundedRepr(reprlib.Repr):
    """reprlib with small limits: never formats more than a few elements of any container."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxset = 3, 6, 6, 4, 6
        self.maxstring, self.maxlong, self.maxother = 60, 40, 60

    def repr1(self, x: Any, level: int) -> str:
        for base in (bool, int, float, str, list, tuple, dict, set, frozenset):
            if isinstance(x, base) and type(x) is not base:  # subclasses (e.g. YAML strings) as their base
                return getattr(self, f"repr_{base.__name__}", self.repr_instance)(x, level)
        return super().repr1(x, level)

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() of a huge int is slow, and refused past 4300 digits
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_REPR = _BoundedRepr()


def _describe(value: Any) -> str:
    """A short repr of any value, bounded in time and memory however large the value is."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a user type whose __repr__ raises
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


# --- the one converter -------------------------------------------------------------------------------

converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)


def _strict(kind: type, accept: tuple[type, ...], name: str) -> None:
    def hook(value: Any, _: type) -> Any:
        if isinstance(value, YamlNumeral) and kind is float:
            raise TypeError(f"expected {name}: {value.hint()}")
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {name}, got {_describe(value)}")
        if not isinstance(value, accept):
            raise TypeError(f"expected {name}, got {_describe(value)}")
        return kind(value)

    converter.register_structure_hook(kind, hook)


_strict(int, (int,), "int")
_strict(float, (int, float), "a number")
_strict(bool, (bool,), "true or false")
_strict(str, (str,), "a string")


_SCALAR_NAMES = {int: "int", float: "number", str: "str", bool: "true or false"}


def _is_scalar_sequence(t: Any) -> bool:
    """``tuple[int, ...]``, ``list[str]`` and the like: homogeneous sequences of one scalar type."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALAR_NAMES
    return origin is list and len(args) == 1 and args[0] in _SCALAR_NAMES


def _scalar_sequence_hook(t: Any) -> Any:
    """Refuse a string or a lone value as a whole (one error), then check each element as cattrs does."""
    from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory

    base = (homogenous_tuple_structure_factory if typing.get_origin(t) is tuple else list_structure_factory)(
        t, converter
    )
    expected = f"expected a list of {_SCALAR_NAMES[typing.get_args(t)[0]]}"

    def hook(value: Any, cls: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{expected}, got {_describe(value)}")
        return base(value, cls)

    return hook


def _is_literal(t: Any) -> bool:
    return typing.get_origin(t) is Literal


def _structure_literal(value: Any, t: Any) -> Any:
    options = typing.get_args(t)
    if not any(type(value) is type(o) and value == o for o in options):
        raise ValueError(f"expected one of {', '.join(repr(o) for o in options)}, got {_describe(value)}")
    return value


def structure_hook(cls: type) -> Any:
    """The converter's structure function for an attrs class (a plugin's hook factory may wrap it): a
    well-formed table structures without generated code; when anything is wrong, cattrs's generated hook
    (made then, once per class) structures it again and says what, with every path.

    Generating a class's hook compiles a function of all its fields (about 2 ms for a 20-field config);
    building the default recipe would pay that for every config class on every start.
    """
    if any(isinstance(a.type, str) for a in attrs.fields(cls)):
        attrs.resolve_types(cls)  # `from __future__ import annotations`: the hooks dispatch on types
    known = frozenset(a.name for a in attrs.fields(cls) if a.init)
    detailed: list[Any] = []

    def hook(data: Any, _: type) -> Any:
        if isinstance(data, Mapping) and known.issuperset(data):
            try:
                return converter.structure_attrs_fromdict(data, cls)
            except Exception:  # noqa: BLE001 - any problem is said by the detailed hook below
                pass
        if not detailed:
            detailed.append(converter.gen_structure_attrs_fromdict(cls))
        return detailed[0](data, cls)

    return hook


converter.register_structure_hook_factory(attrs.has, structure_hook)
converter.register_structure_hook_func(_is_literal, _structure_literal)
converter.register_structure_hook_factory(_is_scalar_sequence, _scalar_sequence_hook)

_SCHEDULE_CLASSES = tuple(SCHEDULES.values())


def _is_weight(t: Any) -> bool:
    """A Union of float with one or more schedule classes: the Weight type, or a narrower one."""
    args = typing.get_args(t)
    return (
        typing.get_origin(t) in (Union, types.UnionType)
        and float in args
        and len(args) > 1
        and all(a is float or a in _SCHEDULE_CLASSES for a in args)
    )


def _structure_weight(value: Any, t: Any) -> Any:
    allowed = [a for a in typing.get_args(t) if a is not float]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Mapping) and "schedule" in value:
        kind = value["schedule"]
        by_kind = {a.kind: a for a in allowed}
        if kind not in by_kind:
            raise ValueError(
                f"unknown schedule {_describe(kind)}; expected one of "
                f"{', '.join(sorted(by_kind))}{did_you_mean(str(kind), by_kind)}"
            )
        fields = {k: v for k, v in value.items() if k != "schedule"}
        return converter.structure(fields, by_kind[kind])
    if isinstance(value, YamlNumeral):
        raise TypeError(f"expected a number: {value.hint()}")
    kinds = " | ".join(repr(a.kind) for a in allowed)
    raise TypeError(f"expected a number or a schedule table {{schedule = {kinds}, ...}}, got {_describe(value)}")


converter.register_structure_hook_func(_is_weight, _structure_weight)
for _cls in _SCHEDULE_CLASSES:
    converter.register_unstructure_hook(
        _cls, lambda s: {"schedule": s.kind, **{a.name: getattr(s, a.name) for a in attrs.fields(type(s))}}
    )


def check_weight(value: Any) -> str | None:
    """The reason a structured weight is invalid, or None: floats must be finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float) + _SCHEDULE_CLASSES):
        return f"expected a number or a schedule, got {_describe(value)}"
    if isinstance(value, (int, float)) and not (math.isfinite(value) and value >= 0):
        return f"expected a finite weight >= 0, got {value!r}"
    return None


# --- error paths ---------------------------------------------------------------------------------------


def problems_from(exc: BaseException, path: str) -> list[Problem]:
    """Flatten a cattrs / validator exception tree into (path, reason) pairs a person can read."""
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        with_notes, without = exc.group_exceptions()
        out: list[Problem] = []
        for sub, note in with_notes:
            key = getattr(note, "name", None)
            if key is None:
                key = getattr(note, "index", "?")
            out += problems_from(sub, join(path, key) if isinstance(key, (str, int)) else f"{path}[{key!r}]")
        for sub in without:
            out += problems_from(sub, path)
        return out
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return [(path, "missing (a required field)")]
    if isinstance(exc, ForbiddenExtraKeysError):
        fields = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        return [
            (join(path, k), f"unknown key{did_you_mean(k, fields)} (valid keys: {', '.join(fields)})")
            for k in sorted(exc.extra_fields)
        ]
    if isinstance(exc, InvalidConfig):
        return [(join(path, p) if p else path, r) for p, r in exc.problems]
    message = str(exc)
    head, sep, rest = message.partition(": ")
    if sep and head.replace("_", "").replace("[", "").replace("]", "").replace(".", "").isalnum() and " " not in head:
        return [(join(path, head), rest)]
    return [(path, message)]


def structure_checked(data: Any, cls: type, path: str) -> tuple[Any, list[Problem]]:
    """Structure ``data`` as ``cls``; return (instance or None, problems) instead of raising.

    When fields fail to structure, the class's own checks (``__attrs_post_init__``) still run on the other
    fields, with the failing ones at their defaults, so a user sees both kinds of problem in one list.
    """
    if not isinstance(data, Mapping):
        return None, [(path, f"expected a table of {cls.__name__} fields, got {_describe(data)}")]
    try:
        return converter.structure(dict(data), cls), []
    except StructureHandlerNotFoundError as exc:  # a plugin's config class that cattrs cannot structure
        return None, [(path, f"{cls.__name__} cannot be structured by cattrs: {exc}")]
    except (
        ClassValidationError,
        IterableValidationError,
        ForbiddenExtraKeysError,
        InvalidConfig,
        ValueError,
        TypeError,
    ) as exc:
        problems = problems_from(exc, path)
        own_checks_ran = isinstance(exc, InvalidConfig)
    if not own_checks_ran:
        problems += _own_check_problems(data, cls, path, problems)
    return None, problems


def _own_check_problems(data: Mapping[str, Any], cls: type, path: str, found: list[Problem]) -> list[Problem]:
    """The class's own problems with the fields that did structure: the failing ones left at their defaults.

    Only where every failing field has a default; problems about a failing field are not repeated.
    """
    if not attrs.has(cls):
        return []
    fields = attrs.fields_dict(cls)
    prefix = f"{path}." if path else ""
    failing = {p[len(prefix) :].split(".")[0].split("[")[0] for p, _ in found if p.startswith(prefix)}
    if not failing or any(f in fields and fields[f].default is attrs.NOTHING for f in failing):
        return []
    rest = {k: v for k, v in data.items() if k not in failing}
    try:
        converter.structure(rest, cls)
        return []
    except (ClassValidationError, InvalidConfig, ValueError, TypeError) as exc:  # cattrs wraps __init__'s errors
        own = problems_from(exc, path)
    return [(p, r) for p, r in own if p[len(prefix) :].split(".")[0].split("[")[0] not in failing]


def unstructure(value: Any) -> Any:
    """Plain data (dicts, lists, numbers, strings) for any config object."""
    return converter.unstructure(value)


# --- files ---------------------------------------------------------------------------------------------


def read_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a .toml/.json/.yaml file into a mapping; YAML through safe loading only."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(
            [("", f"unsupported config file type {p.suffix!r}; expected one of {', '.join(SUFFIXES)}")], str(p)
        )
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError([("", f"file is {size} bytes; a loss config is at most {MAX_CONFIG_BYTES}")], str(p))
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError([("", "file not found")], str(p)) from None
    except IsADirectoryError:
        raise ConfigError([("", "is a directory, expected a config file")], str(p)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [("", f"not UTF-8 text (line {line}, byte {exc.start}: {raw[exc.start : exc.start + 1]!r})")], str(p)
        ) from None
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix == ".json":
            import json

            data = json.loads(text, object_pairs_hook=_unique_pairs)
        else:
            data = _load_yaml(text)
    except _YamlRefused as exc:
        raise ConfigError([exc.problem], str(p)) from None
    except Exception as exc:  # each parser has its own error type; all are the user's syntax
        raise ConfigError([("", f"cannot parse as {suffix[1:].upper()}: {exc}")], str(p)) from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([("", f"expected a table at the top level, got {type(data).__name__}")], str(p))
    return dict(data)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


class YamlNumeral(str):
    """A plain YAML scalar that looks like a number but YAML 1.1 reads as a string, such as ``1e-3``."""

    def hint(self) -> str:
        """How to write the number so that YAML reads it as one."""
        mantissa, _, exponent = self.lower().partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        if exponent[:1] not in ("+", "-"):
            exponent = "+" + exponent
        return f"YAML reads {self} as a string; write {mantissa}e{exponent}"


_YAML_1_2_FLOAT = re.compile(r"[-+]?(\d[\d_]*(\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+")
MAX_YAML_VALUES = 100_000  # after alias expansion; a real loss config holds a few hundred


class _YamlRefused(Exception):
    """A YAML document refused before construction (alias expansion); carries one config problem."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(reason)
        self.problem: Problem = (path, f"line {line}: {reason}")


def _construct_str(loader: Any, node: Any) -> str:
    value = loader.construct_scalar(node)
    if node.style is None and _YAML_1_2_FLOAT.fullmatch(value):
        return YamlNumeral(value)
    return value


def _yaml_loader() -> type:
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        """Safe loading; a key given twice is an error; aliases may not expand beyond MAX_YAML_VALUES."""

        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self.expanded = 0  # values composed so far, each alias counted at its full expanded size
            self.sizes: dict[int, int] = {}
            self.path: list[str | int] = []

        def compose_node(self, parent: Any, index: Any) -> Any:
            key = index.value if isinstance(index, yaml.ScalarNode) else index if isinstance(index, int) else None
            if key is not None:
                self.path.append(key)
            try:
                if not self.check_event(yaml.AliasEvent):
                    before = self.expanded
                    node = super().compose_node(parent, index)
                    self.expanded += 1
                    self.sizes[id(node)] = self.expanded - before
                    return node
                event = self.peek_event()
                node = super().compose_node(parent, index)
                where = ""
                for part in self.path:
                    where = join(where, part)
                size = self.sizes.get(id(node))
                if size is None:
                    raise _YamlRefused(
                        where,
                        event.start_mark.line + 1,
                        f"alias *{event.anchor} is used inside its own anchor (a recursive alias)",
                    )
                self.expanded += size
                if self.expanded > MAX_YAML_VALUES:
                    raise _YamlRefused(
                        where,
                        event.start_mark.line + 1,
                        f"alias *{event.anchor} expands the config beyond {MAX_YAML_VALUES} values; "
                        "write the values out or use fewer aliases",
                    )
                return node
            finally:
                if key is not None:
                    self.path.pop()

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    ConfigLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)
    return ConfigLoader


_LOADER: type | None = None


def _load_yaml(text: str) -> Any:
    """yaml.safe_load, except that a duplicate key or an alias bomb is an error, and numerals are marked."""
    import yaml

    global _LOADER
    _LOADER = _LOADER or _yaml_loader()
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader subclass


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


def format_mapping(data: Mapping[str, Any], suffix: str) -> str:
    """Text of a mapping in the format of a file suffix (.toml, .json, .yaml, .yml)."""
    suffix = suffix.lower()
    if suffix == ".toml":
        import tomli_w

        return tomli_w.dumps(_drop_none(data))  # TOML has no null: absent means default
    if suffix == ".json":
        import json

        return json.dumps(data, indent=2) + "\n"
    if suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_dump(dict(data), sort_keys=False)
    raise ConfigError([("", f"unsupported config file type {suffix!r}; expected one of {', '.join(SUFFIXES)}")])


def write_mapping(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a mapping as .toml/.json/.yaml atomically (temp file, fsync, rename)."""
    p = Path(path)
    try:
        text = format_mapping(data, p.suffix)
    except ConfigError as exc:
        raise ConfigError(exc.problems, str(p)) from None
    atomic_write_text(p, text)
    return p
