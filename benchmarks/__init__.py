"""Benchmarks of zart-nb: ``python -m benchmarks [--quick] [--only NAME ...]`` prints JSON.

Each module of this package registers its benchmarks with ``@benchmark("name")``
(see ``common.py``); ``__main__`` imports every module, so a new file is all it takes.
"""
