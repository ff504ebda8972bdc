"""Order producers: the European catalog, the 11.11 traffic curve and the order stream."""

from __future__ import annotations

from producers.catalog import Catalog, Sku
from producers.curves import Curve
from producers.generator import Generator

__all__ = ["Catalog", "Curve", "Generator", "Sku"]
