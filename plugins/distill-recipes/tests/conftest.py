"""The helpers these tests share (recipe_anchors) and the ones they import from distill-discriminators' and
distill-quantizer's tests (disc_anchors, disc_weights, vq_anchors) import by name under --import-mode=importlib;
one torch thread per test (two contend badly on the shared 2-core machine)."""

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
PLUGINS = HERE.parents[1]
for folder in (HERE, PLUGINS / "distill-discriminators" / "tests", PLUGINS / "distill-quantizer" / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
