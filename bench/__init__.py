"""`make bench`: the benchmark of the whole stack (bench/run.py; see bench/README.md)."""
