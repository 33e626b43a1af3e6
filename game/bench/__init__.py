"""Benchmarks the project ships: ``python -m game bench [context|choices]``. Each prints a table
(or JSON) of measured numbers; none of them is a test."""
