"""The ``distill-loss`` console script: one line naming the ``train`` extra when click is missing."""

from __future__ import annotations

import sys

from distill_core.util.extras import MissingExtra, require


def main() -> None:
    """Run the click CLI, or say in one line which extra installs it (exit 2)."""
    try:
        require("click", "distill-loss")
    except MissingExtra as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    from distill_core.cli.main import main as cli  # only once click is known to be installed: cli imports it at the top

    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
