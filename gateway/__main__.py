"""`python -m gateway`: serve /stocks on uvicorn, in one process or in `--workers N`."""

from __future__ import annotations

import sys

from contracts.logs import configure_logging
from gateway.process import serve
from gateway.settings import from_environment
from gateway.workers import supervise


def main(argv: list[str]) -> int:
    settings = from_environment(argv)
    configure_logging(settings.log_level)
    if settings.workers > 1:
        return supervise(settings)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
