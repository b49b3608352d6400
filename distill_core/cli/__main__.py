"""``python -m distill_core.cli``: the same command as the ``distill-loss`` script."""

from distill_core.cli.console import main

main()
