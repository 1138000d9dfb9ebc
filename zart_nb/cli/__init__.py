"""The ``zart-nb`` command line (click + rich).

Operators and notebook users get the control a notebook has, outside it::

    zart-nb runs list|show|cancel|restart|rerun|retry-step|result
    zart-nb worker [--dsn URL] [--concurrency N] [--namespace NS]
    zart-nb event send ID NAME [--json PAYLOAD]
    zart-nb db url|status|stop|psql|migrate
    zart-nb gc --older-than 30d [--status S] [--dry-run]
    zart-nb install-kernel [--user|--sys-prefix|--prefix P] [--name N]
    zart-nb demo

Exit codes: 0 success, 1 a failed operation, 2 bad usage. See docs/cli.md.
"""

from __future__ import annotations

from .app import cli
from .db import db_group
from .gc import gc_cmd
from .misc import demo_cmd, event_group, install_kernel_cmd, worker_cmd
from .runs import runs_group

for _command in (runs_group, worker_cmd, event_group, db_group, gc_cmd, install_kernel_cmd,
                 demo_cmd):
    cli.add_command(_command)
del _command

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``zart-nb`` console script."""
    cli.main(args=argv, prog_name="zart-nb")


if __name__ == "__main__":
    main()
