"""Test-only helpers that must be importable by Dask worker processes (so not under ``tests/``).

- :mod:`.jobs`: tiny jobs exercising every jobflow Response path, for execution managers.
- :mod:`.potentials`: a tiny random MatRIS checkpoint written on the spot.
- :mod:`.synthetic`: a cheap synthetic candidate source for campaign-scale tests and benchmarks.
"""
