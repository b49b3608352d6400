"""Configs: one converter factory (strict value hooks, schedules as a tagged union, classes that structure
themselves, fields required in files) and error paths read through ``cattrs.transform_error``.

Nothing registers hooks on a converter after it is made: a config class says what it needs in its own
definition (``__distill_structure__`` / ``__distill_unstructure__`` classmethods, or a field's
``metadata={REQUIRED_IN_FILES: reason}``, ``metadata={PATH_RELATIVE_TO_FILE: True}``), so a config structures
the same whatever was imported first.
"""

from __future__ import annotations

import math
import os
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    StructureHandlerNotFoundError,
)
from cattrs.strategies import configure_tagged_union

from distill_core.config.errors import ConfigError, InvalidConfig, Problem, _describe, did_you_mean, join, problems_from
from distill_core.config.formats import (
    MAX_CONFIG_BYTES,
    MAX_YAML_VALUES,
    SUFFIXES,
    YamlNumeral,
    format_mapping,
    read_mapping,
    write_mapping,
)
from distill_core.config.schedules import SCHEDULES, Schedule, Weight

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_YAML_VALUES",
    "PATH_RELATIVE_TO_FILE",
    "REQUIRED_IN_FILES",
    "STRUCTURE_WITH",
    "SUFFIXES",
    "UNSTRUCTURE_WITH",
    "ConfigError",
    "InvalidConfig",
    "Problem",
    "YamlNumeral",
    "check_weight",
    "converter",
    "did_you_mean",
    "format_mapping",
    "join",
    "make_converter",
    "paths_relative_to",
    "problems_from",
    "read_mapping",
    "structure_checked",
    "structure_hook",
    "unstructure",
    "write_mapping",
]

# A class that structures itself: ``__distill_structure__(data)`` (a classmethod) returns the instance, and
# ``__distill_unstructure__(instance)`` its plain data.
STRUCTURE_WITH = "__distill_structure__"
UNSTRUCTURE_WITH = "__distill_unstructure__"
# attrs field metadata: the field has a default (so the class constructs without it), but a config file
# must give it; the value is the reason shown when it is left out.
REQUIRED_IN_FILES = "distill.required_in_files"
# attrs field metadata: a string field that names a file. Structured while ``paths_relative_to(folder)`` is in
# effect (``load_config(path)`` puts it in effect with the config file's folder), a relative value is read from
# that folder; an absolute one (``~`` expanded) is kept as given. A config given as a mapping keeps it as written.
PATH_RELATIVE_TO_FILE = "distill.path_relative_to_file"
_CONFIG_FOLDER: ContextVar[str | None] = ContextVar("distill_config_folder", default=None)
SCHEDULE_TAG = "schedule"
_SCALAR_NAMES = {int: "int", float: "number", str: "str", bool: "true or false"}
_SCHEDULE_CLASSES = tuple(SCHEDULES.values())
_TAG_OF = {cls: kind for kind, cls in SCHEDULES.items()}  # each schedule class's ``schedule = "..."`` tag


def _strict(kind: type, accept: tuple[type, ...], name: str) -> Callable[[Any, type], Any]:
    """A scalar taken only as itself: no bool for a number, no string for anything else."""

    def hook(value: Any, _: type) -> Any:
        if isinstance(value, YamlNumeral) and kind is float:
            raise TypeError(f"expected {name}: {value.hint()}")
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {name}, got {_describe(value)}")
        if not isinstance(value, accept):
            raise TypeError(f"expected {name}, got {_describe(value)}")
        return kind(value)

    return hook


def _is_scalar_sequence(t: Any) -> bool:
    """``tuple[int, ...]``, ``list[str]`` and the like: homogeneous sequences of one scalar type."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALAR_NAMES
    return origin is list and len(args) == 1 and args[0] in _SCALAR_NAMES


def _scalar_sequence_hook(t: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """Refuse a string or a lone value as a whole (one error), then check each element as cattrs does."""
    from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory

    factory = homogenous_tuple_structure_factory if typing.get_origin(t) is tuple else list_structure_factory
    base = factory(t, conv)
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


def _own_problems_only(exc: ClassValidationError) -> InvalidConfig | None:
    """The class's own checks, when they are all that failed: every field structured and ``__init__`` raised
    InvalidConfig (cattrs wraps it), so the problems are the class's, said once, with nothing re-checked."""
    with_notes, without = exc.group_exceptions()
    if with_notes or not without or not all(isinstance(e, InvalidConfig) for e in without):
        return None
    return InvalidConfig([p for e in without for p in typing.cast(InvalidConfig, e).problems])


@contextmanager
def paths_relative_to(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Inside this block, the ``PATH_RELATIVE_TO_FILE`` fields of configs structured here resolve relative
    values against ``folder`` (made absolute)."""
    token = _CONFIG_FOLDER.set(os.path.abspath(folder))
    try:
        yield
    finally:
        _CONFIG_FOLDER.reset(token)


def _resolved_paths(data: Mapping[str, Any], fields: tuple[str, ...]) -> Mapping[str, Any]:
    """``data`` with each relative string path among ``fields`` joined to the current config folder, if any."""
    folder = _CONFIG_FOLDER.get()
    if folder is None or not any(isinstance(data.get(f), str) and data.get(f) for f in fields):
        return data
    out = dict(data)
    for name in fields:
        value = out.get(name)
        if isinstance(value, str) and value:
            expanded = os.path.expanduser(value)
            out[name] = expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(folder, expanded))
    return out


def structure_hook(cls: type, conv: cattrs.Converter | None = None) -> Callable[[Any, type], Any]:
    """The structure function of an attrs config class: a well-formed table structures without generated code;
    when anything is wrong, cattrs's generated hook (made then, once per class) structures it again and says
    what, with every path. A field with ``REQUIRED_IN_FILES`` metadata left out (or null) is a problem; one
    with ``PATH_RELATIVE_TO_FILE`` metadata is resolved against the config file's folder (``paths_relative_to``).

    Generating a class's hook compiles a function of all its fields (about 2 ms for a 20-field config);
    building the default recipe would pay that for every config class on every start.
    """
    use = conv if conv is not None else converter
    if any(isinstance(a.type, str) for a in attrs.fields(cls)):
        attrs.resolve_types(cls)  # `from __future__ import annotations`: the hooks dispatch on types
    known = frozenset(a.name for a in attrs.fields(cls) if a.init)
    required = [
        (a.name, str(a.metadata[REQUIRED_IN_FILES])) for a in attrs.fields(cls) if REQUIRED_IN_FILES in a.metadata
    ]
    relative = tuple(a.name for a in attrs.fields(cls) if a.metadata.get(PATH_RELATIVE_TO_FILE))
    detailed: list[Any] = []

    def structure(data: Any) -> Any:
        if isinstance(data, Mapping) and known.issuperset(data):
            try:
                return use.structure_attrs_fromdict(data, cls)
            except Exception:  # noqa: BLE001 - any problem is said by the detailed hook below
                pass
        if not detailed:
            detailed.append(use.gen_structure_attrs_fromdict(cls))
        try:
            return detailed[0](data, cls)
        except ClassValidationError as exc:
            own = _own_problems_only(exc)
            if own is None:
                raise
            raise own from None

    def hook(data: Any, _: type) -> Any:
        if relative and isinstance(data, Mapping):
            data = _resolved_paths(data, relative)
        missing = [(k, r) for k, r in required if isinstance(data, Mapping) and data.get(k) is None]
        try:
            value = structure(data)
        except InvalidConfig as exc:  # the class's own problems, reported together with a missing key
            if missing:
                raise InvalidConfig(missing + list(exc.problems)) from None
            raise
        if missing:
            raise InvalidConfig(missing)
        return value

    return hook


def _unstructure_schedule(schedule: Any) -> dict[str, Any]:
    """A schedule as its table, the tag first (``{schedule = "linear_warmup", max = 1.0, ...}``)."""
    return {SCHEDULE_TAG: schedule.kind, **{a.name: getattr(schedule, a.name) for a in attrs.fields(type(schedule))}}


def _is_weight(t: Any) -> bool:
    """The Weight type: a number or a schedule."""
    return bool(t == Weight)


def _weight_hook(conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """A number as a float, a table by its ``schedule`` tag (the tagged union of the schedules)."""

    def structure_weight(value: Any, _: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, Mapping) and SCHEDULE_TAG in value:
            kind = value[SCHEDULE_TAG]
            if kind not in SCHEDULES:
                raise ValueError(
                    f"unknown schedule {_describe(kind)}; expected one of "
                    f"{', '.join(sorted(SCHEDULES))}{did_you_mean(str(kind), SCHEDULES)}"
                )
            return conv.structure(dict(value), typing.cast(Any, Schedule))
        if isinstance(value, YamlNumeral):
            raise TypeError(f"expected a number: {value.hint()}")
        kinds = " | ".join(repr(kind) for kind in SCHEDULES)
        raise TypeError(f"expected a number or a schedule table {{schedule = {kinds}, ...}}, got {_describe(value)}")

    return structure_weight


def _structures_itself(t: Any) -> bool:
    return isinstance(t, type) and callable(getattr(t, STRUCTURE_WITH, None))


def _unstructures_itself(t: Any) -> bool:
    return isinstance(t, type) and callable(getattr(t, UNSTRUCTURE_WITH, None))


def make_converter() -> cattrs.Converter:
    """A converter with every rule of a distill config, made whole here: strict scalars and literals, attrs
    classes with readable errors, schedules as a tagged union, classes that structure themselves."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind, accept, name in (
        (int, (int,), "int"),
        (float, (int, float), "a number"),
        (bool, (bool,), "true or false"),
        (str, (str,), "a string"),
    ):
        conv.register_structure_hook(kind, _strict(kind, accept, name))
    conv.register_structure_hook_factory(attrs.has, lambda cls: structure_hook(cls, conv))
    conv.register_structure_hook_func(_is_literal, _structure_literal)
    conv.register_structure_hook_factory(_is_scalar_sequence, lambda t: _scalar_sequence_hook(t, conv))
    for cls in _SCHEDULE_CLASSES:
        conv.register_unstructure_hook(cls, _unstructure_schedule)
    configure_tagged_union(Schedule, conv, tag_generator=_TAG_OF.__getitem__, tag_name=SCHEDULE_TAG)
    conv.register_structure_hook_func(_is_weight, _weight_hook(conv))
    conv.register_structure_hook_factory(
        _structures_itself, lambda cls: lambda data, _: getattr(cls, STRUCTURE_WITH)(data)
    )
    conv.register_unstructure_hook_factory(_unstructures_itself, lambda cls: getattr(cls, UNSTRUCTURE_WITH))
    return conv


converter = make_converter()  # the core's, made once; nothing registers on it afterwards


def check_weight(value: Any) -> str | None:
    """The reason a structured weight is invalid, or None: floats must be finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float) + _SCHEDULE_CLASSES):
        return f"expected a number or a schedule, got {_describe(value)}"
    if isinstance(value, (int, float)) and not (math.isfinite(value) and value >= 0):
        return f"expected a finite weight >= 0, got {value!r}"
    return None


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
