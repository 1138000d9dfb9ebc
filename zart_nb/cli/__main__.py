"""``python -m zart_nb.cli``: the same command as the ``zart-nb`` script."""

from . import main

main()
