"""``python -m gateway`` is the ``ewg`` command."""

from gateway.cli import main

main()
