"""``python -m storesense.cli``: the same as the ``storesense`` command."""

from . import main

main()
