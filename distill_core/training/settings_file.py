"""A demo model's settings as JSON beside its run's checkpoints, so the run's model can be rebuilt and fed later."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

import attrs

from distill_core.config.converter import converter, problems_from
from distill_core.files.atomic import atomic_write_text
from distill_core.training.checkpoint import CheckpointError

T = TypeVar("T")


def save_settings(settings: Any, path: str | os.PathLike) -> Path:
    """An attrs settings object as indented JSON, written atomically."""
    return atomic_write_text(path, json.dumps(attrs.asdict(settings), indent=1) + "\n")


def load_settings(path: str | os.PathLike, cls: type[T], what: str) -> T:
    """The ``cls`` that save_settings wrote; a CheckpointError names the file, ``what`` settings, and the problem."""
    p = Path(path)
    try:
        return converter.structure(json.loads(p.read_text(encoding="utf-8")), cls)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read {what} settings: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p}: not JSON: {exc.msg} at line {exc.lineno}") from None
    except Exception as exc:
        where = "; ".join(f"{k}: {r}" if k else r for k, r in problems_from(exc, ""))
        raise CheckpointError(f"{p}: invalid {what} settings: {where}") from None
