"""``python -m convzoo.studies``: the same command as ``convzoo study`` (see ``registry``)."""
from .registry import main

raise SystemExit(main())
