"""Counts of fuzzed cases per input class, printed at the end of the pytest run.

    fuzzlog.record("data: binary file", "rejected")   # outcome: rejected | loaded | recovered

The conftest's terminal summary prints one line per (class, outcome), so CI output says how
many cases each fuzz test tried and how they ended.
"""
import collections

COUNTS: collections.Counter = collections.Counter()


def record(klass: str, outcome: str) -> None:
  COUNTS[(klass, outcome)] += 1
