"""The data model of a loss config, torch-free: weights and schedules, groups, the converter, config files."""

from __future__ import annotations

from distill_core.config.converter import (
    MAX_CONFIG_BYTES,
    MAX_YAML_VALUES,
    SUFFIXES,
    ConfigError,
    InvalidConfig,
    Problem,
    YamlNumeral,
    check_weight,
    converter,
    did_you_mean,
    format_mapping,
    join,
    problems_from,
    read_mapping,
    structure_checked,
    structure_hook,
    unstructure,
    write_mapping,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_YAML_VALUES",
    "SUFFIXES",
    "ConfigError",
    "InvalidConfig",
    "Problem",
    "YamlNumeral",
    "check_weight",
    "converter",
    "did_you_mean",
    "format_mapping",
    "join",
    "problems_from",
    "read_mapping",
    "structure_checked",
    "structure_hook",
    "unstructure",
    "write_mapping",
]
