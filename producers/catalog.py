"""The European catalog on sale on 11.11, and who buys it: Chinese provinces, channels, payments.

Everything is drawn from one seeded `random.Random`, so a (spec, seed) pair always yields the
same catalog, SKU for SKU, in every process.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Final

from flashsale.scenario import CatalogSpec

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "PAYMENTS",
    "PROVINCES",
    "Catalog",
    "Category",
    "Sku",
]


@dataclass(frozen=True, slots=True)
class Sku:
    """One product line of one merchant; `stock` is the units loaded for the sale."""

    sku: str
    merchant: str
    country: str
    category: str
    unit_price_cents: int
    stock: int
    flash: bool


@dataclass(frozen=True, slots=True)
class Category:
    """A product category: its SKU code, unit price range in euro cents and cross-border demand."""

    name: str
    code: str
    min_cents: int
    max_cents: int
    demand: float


# What European merchants actually ship to Chinese buyers through cross-border platforms
# (Tmall Global, JD Worldwide, Kaola): imported infant formula and cosmetics dominate, then
# fashion, supplements and luxury. Prices are typical unit prices of one item, not of a case.
CATEGORIES: Final[tuple[Category, ...]] = (
    Category("wine", "WIN", 8_00, 120_00, 1.0),
    Category("cosmetics", "COS", 15_00, 250_00, 1.6),
    Category("fashion", "FAS", 30_00, 600_00, 1.0),
    Category("infant-formula", "INF", 25_00, 45_00, 1.3),
    Category("handbags", "HAN", 300_00, 3_000_00, 0.5),
    Category("olive-oil", "OLI", 6_00, 45_00, 0.6),
    Category("chocolate", "CHO", 3_00, 40_00, 0.6),
    Category("cheese", "CHE", 5_00, 50_00, 0.4),
    Category("health-supplements", "HEA", 12_00, 80_00, 1.0),
    Category("kitchenware", "KIT", 20_00, 600_00, 0.7),
    Category("watches", "WAT", 150_00, 5_000_00, 0.3),
    Category("coffee", "COF", 5_00, 60_00, 0.6),
)

# Multipliers on a category's demand for SKUs of a country: what each country is known for.
# A category not listed keeps weight 1, so every country still sells a bit of everything.
_SPECIALTY: Final = 6.0
_AFFINITIES: Final[dict[str, tuple[str, ...]]] = {
    "FR": ("wine", "cosmetics", "handbags"),
    "IT": ("fashion", "olive-oil", "coffee", "handbags"),
    "DE": ("kitchenware", "infant-formula", "health-supplements"),
    "NL": ("infant-formula", "cheese"),
    "BE": ("chocolate",),
    "ES": ("olive-oil", "wine"),
    "AT": ("chocolate", "wine", "health-supplements"),  # Mozartkugeln, Grüner Veltliner
    "PT": ("wine", "olive-oil", "cosmetics"),  # port, Alentejo oil, Porto soap houses
}

# Relative share of the catalog's SKUs per country (France and Italy lead EU consumer exports
# to China); a country outside this table gets `_OTHER_COUNTRY_WEIGHT`.
_COUNTRY_WEIGHTS: Final[dict[str, float]] = {
    "FR": 1.6,
    "IT": 1.4,
    "DE": 1.3,
    "ES": 0.8,
    "NL": 0.8,
    "BE": 0.5,
    "AT": 0.5,
    "PT": 0.5,
}
_OTHER_COUNTRY_WEIGHT: Final = 0.6

# Merchant names are "{a} {b}" from these parts; ASCII only so names survive any sink.
_MERCHANT_PARTS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "FR": (
        ("Maison", "Comptoir", "Atelier", "Galeries"),
        ("Beaumont", "Lavigne", "Delacroix", "Rivoli", "Saint-Clair", "Montaigne"),
    ),
    "IT": (
        ("Casa", "Bottega", "Fratelli", "Emporio"),
        ("Bellini", "Moretti", "Ricci", "Conti", "Fontana", "Marchetti"),
    ),
    "DE": (
        ("Hoffmann", "Becker", "Schulte", "Keller", "Brandt", "Vogel"),
        ("GmbH", "& Soehne", "Handel", "Manufaktur"),
    ),
    "ES": (
        ("Casa", "Grupo", "Hermanos", "Almacenes"),
        ("Navarro", "Ortega", "Castillo", "Vidal", "Serrano", "Molina"),
    ),
    "NL": (
        ("Van den Berg", "De Vries", "Bakker", "Visser", "Jansen", "Smit"),
        ("B.V.", "& Zonen", "Handelshuis"),
    ),
    "BE": (
        ("Maison", "Huis", "Comptoir", "Galerie"),
        ("Dubois", "Peeters", "Janssens", "Lambert", "Claes", "Wouters"),
    ),
    "AT": (
        ("Huber", "Gruber", "Wagner", "Pichler", "Steiner", "Moser"),
        ("& Co", "Manufaktur", "Handels GmbH", "Wien"),
    ),
    "PT": (
        ("Casa", "Irmaos", "Armazens", "Companhia"),
        ("Ferreira", "Almeida", "Sousa", "Costa", "Pereira", "Lopes"),
    ),
}
_OTHER_MERCHANT_PARTS: Final = (
    ("Trading", "Export", "Selection", "Direct"),
    ("House", "Company", "Group", "Partners"),
)
_MERCHANTS_PER_COUNTRY: Final = 5

# Buyer province (or municipality) of cross-border orders, as relative weights. They are
# approximate and rounded, not measured: the ranking and rough proportions follow the
# National Bureau of Statistics of China provincial online retail sales and published
# cross-border consumption rankings (coastal provinces and the big municipalities lead).
PROVINCES: Final[tuple[tuple[str, float], ...]] = (
    ("Guangdong", 15.0),
    ("Zhejiang", 11.0),
    ("Jiangsu", 9.0),
    ("Shanghai", 8.5),
    ("Beijing", 7.5),
    ("Shandong", 5.5),
    ("Fujian", 4.5),
    ("Sichuan", 4.0),
    ("Henan", 3.5),
    ("Hubei", 3.2),
    ("Hunan", 2.8),
    ("Anhui", 2.6),
    ("Hebei", 2.5),
    ("Tianjin", 2.0),
    ("Chongqing", 2.0),
    ("Liaoning", 2.0),
    ("Shaanxi", 1.8),
    ("Jiangxi", 1.6),
    ("Guangxi", 1.5),
    ("Yunnan", 1.4),
    ("Heilongjiang", 1.0),
    ("Shanxi", 1.0),
    ("Guizhou", 0.9),
    ("Jilin", 0.8),
    ("Inner Mongolia", 0.7),
    ("Hainan", 0.7),
    ("Xinjiang", 0.5),
    ("Gansu", 0.5),
    ("Ningxia", 0.2),
    ("Qinghai", 0.15),
    ("Tibet", 0.1),
)

# Mobile dominates 11.11 traffic; mini-programs are the WeChat storefronts.
CHANNELS: Final[tuple[tuple[str, float], ...]] = (
    ("app", 0.78),
    ("mini-program", 0.15),
    ("web", 0.07),
)

# Mixed across platforms (Tmall takes Alipay, JD and mini-programs take WeChat Pay);
# Huabei is Ant's consumer credit, heavily used for big 11.11 baskets.
PAYMENTS: Final[tuple[tuple[str, float], ...]] = (
    ("alipay", 0.52),
    ("wechat-pay", 0.22),
    ("huabei", 0.18),
    ("unionpay", 0.08),
)


class Catalog:
    """The SKUs on sale with their popularity, ready for weighted sampling."""

    __slots__ = ("by_id", "cum_weights", "flash_skus", "skus", "weights")

    def __init__(self, skus: tuple[Sku, ...], weights: tuple[float, ...]) -> None:
        if not skus or len(skus) != len(weights):
            raise ValueError("a catalog needs one popularity weight per SKU, and some SKUs")
        self.skus: tuple[Sku, ...] = skus
        self.weights: tuple[float, ...] = weights
        self.by_id: dict[str, Sku] = {s.sku: s for s in skus}
        if len(self.by_id) != len(skus):
            raise ValueError("SKU ids must be unique")
        self.cum_weights: list[float] = list(itertools.accumulate(weights))
        self.flash_skus: tuple[Sku, ...] = tuple(s for s in skus if s.flash)

    def __len__(self) -> int:
        """Number of SKUs."""
        return len(self.skus)

    @classmethod
    def build(cls, spec: CatalogSpec, seed: int) -> Catalog:
        """Generate the catalog for `spec`, deterministically from `seed`."""
        # A string seed goes through SHA-512, not hash(), so it is stable across processes;
        # it also keeps the catalog's draws independent of the order stream's Random(seed).
        rng = random.Random(f"flashsale-catalog:{seed}")
        countries = spec.countries
        if not countries:
            raise ValueError("the catalog needs at least one country")

        merchants = {c: _merchants(rng, c) for c in countries}
        country_cum = list(
            itertools.accumulate(_COUNTRY_WEIGHTS.get(c, _OTHER_COUNTRY_WEIGHT) for c in countries)
        )
        category_cum = {c: list(itertools.accumulate(_category_weights(c))) for c in countries}

        drafts: list[tuple[str, str, str, str, int]] = []
        serial: dict[tuple[str, str], int] = {}
        for i in range(spec.sku_count):
            # The first SKUs cover every country once, so small catalogs still span the spec.
            if i < len(countries):
                country = countries[i]
            else:
                country = rng.choices(countries, cum_weights=country_cum)[0]
            category = rng.choices(CATEGORIES, cum_weights=category_cum[country])[0]
            n = serial[country, category.name] = serial.get((country, category.name), 0) + 1
            drafts.append(
                (
                    f"{country}-{category.code}-{n:04d}",
                    rng.choice(merchants[country]),
                    country,
                    category.name,
                    _price_cents(rng, category),
                )
            )

        flash_count = round(spec.flash_share * spec.sku_count)
        flash = set(rng.sample(range(spec.sku_count), flash_count))
        skus = tuple(
            Sku(
                sku=sku_id,
                merchant=merchant,
                country=country,
                category=category_name,
                unit_price_cents=price,
                stock=rng.randint(*(spec.flash_stock if i in flash else spec.stock)),
                flash=i in flash,
            )
            for i, (sku_id, merchant, country, category_name, price) in enumerate(drafts)
        )

        order = list(range(spec.sku_count))
        rng.shuffle(order)
        weights = [0.0] * spec.sku_count
        for rank, i in enumerate(order, start=1):
            weight = 1.0 / rank**spec.zipf_exponent
            # Flash items are the advertised doorbusters: boosted so their small stock sells out.
            weights[i] = weight * spec.flash_popularity_boost if i in flash else weight
        return cls(skus, tuple(weights))


def _merchants(rng: random.Random, country: str) -> tuple[str, ...]:
    """A few distinct merchant names for `country`."""
    firsts, seconds = _MERCHANT_PARTS.get(country, _OTHER_MERCHANT_PARTS)
    names = [f"{a} {b}" for a, b in itertools.product(firsts, seconds)]
    if country not in _MERCHANT_PARTS:
        names = [f"{country} {name}" for name in names]
    return tuple(rng.sample(names, min(_MERCHANTS_PER_COUNTRY, len(names))))


def _category_weights(country: str) -> list[float]:
    """Demand of each category, boosted for what `country` is known for."""
    specialties = _AFFINITIES.get(country, ())
    return [c.demand * (_SPECIALTY if c.name in specialties else 1.0) for c in CATEGORIES]


def _price_cents(rng: random.Random, category: Category) -> int:
    """A shelf price in the category's range: log-uniform, as prices are, ending in .99."""
    low_eur = category.min_cents // 100
    high_eur = category.max_cents // 100
    scale: float = (high_eur / low_eur) ** rng.random()
    euros = round(low_eur * scale)
    # Clamped so that `euros * 100 - 1` stays within [min_cents, max_cents].
    euros = min(high_eur, max(low_eur + 1, euros))
    return euros * 100 - 1
