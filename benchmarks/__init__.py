"""Speed benchmarks: ``python benchmarks/speed.py --help``. They print tables; they assert nothing."""
