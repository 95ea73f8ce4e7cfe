"""``python -m imgpipe`` is the ``imgpipe`` command."""

from imgpipe.entrypoints.cli import main

main()
