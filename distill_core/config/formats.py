"""Config files: .toml, .json and .yaml read into a mapping (YAML safely, duplicate keys and alias bombs
refused, YAML 1.1's string numerals marked) and written back atomically."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distill_core.config.errors import ConfigError, Problem, join
from distill_core.files.atomic import atomic_write_text

MAX_CONFIG_BYTES = 1_000_000
SUFFIXES = (".toml", ".json", ".yaml", ".yml")


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
