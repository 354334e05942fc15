"""``python -m fda`` (used by ``torchrun -m fda``)."""

from fda.cli import main

main()
