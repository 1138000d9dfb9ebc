"""``python -m benchmarks [--quick] [--only NAME ...]``: run benchmarks, print one JSON object."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import sys

import benchmarks

from .common import REGISTRY, Context

_NOT_BENCHMARKS = {"__main__", "common"}


def load_all() -> None:
    """Import every module of the package, so that its ``@benchmark`` functions register."""
    for module in pkgutil.iter_modules(benchmarks.__path__):
        if module.name not in _NOT_BENCHMARKS:
            importlib.import_module(f"benchmarks.{module.name}")


def main(argv: list[str] | None = None) -> int:
    load_all()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(REGISTRY),
                        help="run only these benchmarks (default: all)")
    args = parser.parse_args(argv)

    ctx = Context(quick=args.quick)
    results = {}
    try:
        for name in args.only or sorted(REGISTRY):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results[name] = REGISTRY[name](ctx)
    finally:
        ctx.close()
    report = {"quick": args.quick, "python": platform.python_version(),
              "machine": platform.machine(), "results": results}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
