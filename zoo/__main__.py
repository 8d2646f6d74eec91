"""``python -m zoo``: the command line."""

from zoo.cli import main

main()
