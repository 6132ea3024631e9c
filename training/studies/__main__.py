"""``python -m training.studies``: see the package docstring."""
from . import main

raise SystemExit(main())
