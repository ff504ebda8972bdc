"""The locustfile and how to start locust on it (locust itself is never imported here)."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["LOCUSTFILE", "locust_command"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def locust_command(*args: str) -> list[str]:
    """`locust -f loadtests/locustfile.py ARGS` with this Python."""
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]
