"""flashsale: an event-driven simulator of the Singles' Day order storm."""

from pathlib import Path

from flashsale.compiled import prefer_fresh_source, stems_of

__version__ = "0.1.0"

prefer_fresh_source(__name__, Path(__file__).parent, stems_of(__name__))

__all__ = ["__version__"]
