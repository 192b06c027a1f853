"""``python -m app.cli``: the ``jobchain`` command without its installed script."""

from app.cli import main

main()
