"""Where the tests find the project's files."""

from pathlib import Path

#: The repository's root folder.
ROOT = Path(__file__).resolve().parents[1]
