"""Write the golden files of tests/golden/ from the catalogue (like cloudpickle's
tests/generate_old_pickles.py).

``python -m tests.golden.generate``        rewrite fingerprints.json and payloads.json
``python -m tests.golden.generate --print`` print the fingerprints JSON, write nothing

Rewriting them is a migration: do it only when a change of the payload format or of
the hashing is deliberate, and say so in docs/decisions.md (test_golden.py explains).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cloudpickle

from zart_nb import codec
from zart_nb.config import Settings, configure
from zart_nb.engine.fingerprint import SCHEME, code_fingerprint, value_fingerprint

from . import catalogue

HERE = Path(__file__).resolve().parent
FINGERPRINTS = HERE / "fingerprints.json"
PAYLOADS = HERE / "payloads.json"
SECRET = b"zart-test-secret-0123456789abcdef"  # tests/fix_db.py's TEST_SECRET
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def fingerprints() -> dict:
    return {
        "scheme": SCHEME, "python": PYTHON,
        "values": {name: value_fingerprint(v).hex() for name, v in catalogue.values().items()},
        "code": {name: code_fingerprint(fn).hex() for name, fn in catalogue.functions().items()},
    }


def payloads() -> dict:
    configure(Settings(secret=SECRET))
    try:
        stored = {name: codec.encode(v).hex() for name, v in catalogue.payloads().items()}
    finally:
        configure(None)
    return {"format": codec.FORMAT_VERSION, "python": PYTHON,
            "cloudpickle": cloudpickle.__version__, "payloads": stored}


def write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print", action="store_true", help="print the fingerprints, write nothing")
    args = parser.parse_args(argv)
    if args.print:
        print(json.dumps(fingerprints(), sort_keys=True))
        return 0
    write(FINGERPRINTS, fingerprints())
    write(PAYLOADS, payloads())
    print(f"wrote {FINGERPRINTS.name} and {PAYLOADS.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
