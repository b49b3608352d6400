"""The README's quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def test_quickstart_runs_and_backpropagates():
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert code, "README.md lost its quickstart"
    scope: dict = {}
    exec(compile(code.group(1), str(README), "exec"), scope)  # noqa: S102 - our own README
    assert scope["out"]["total_loss"].dim() == 0
    assert scope["recon"].grad is not None and torch.isfinite(scope["recon"].grad).all()
