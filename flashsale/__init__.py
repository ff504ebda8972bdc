"""flashsale: an event-driven simulator of the Singles' Day order storm."""

__version__ = "0.1.0"

__all__ = ["__version__"]
