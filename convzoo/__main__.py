"""``python -m convzoo``: the ``convzoo`` command."""
from convzoo.cli import main

raise SystemExit(main())
