"""Import the example from its source folder: it is deliberately not installed in the dev environment,
so that tests/registry/test_third_party_plugin.py can show the before/after of `pip install`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
