"""The European catalog on sale on 11.11, and who buys it: Chinese provinces, channels, payments.

Everything is drawn from one seeded `random.Random`, so a (spec, seed, popularity) triple always
yields the same catalog, SKU for SKU, in every process.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from flashsale.scenario.model import CATEGORY_NAMES, COUNTRIES, PopularitySpec

if TYPE_CHECKING:
    from flashsale.scenario.model import CatalogSpec, Scenario

__all__ = [
    "CATEGORIES",
    "CATEGORY_NAMES",
    "CHANNELS",
    "COUNTRIES",
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
    "GB": ("fashion", "handbags", "health-supplements"),
    "CH": ("watches", "chocolate", "cheese"),
    "IE": ("infant-formula", "health-supplements"),  # a major infant-formula exporter
    "DK": ("infant-formula", "kitchenware", "cheese"),
    "SE": ("fashion", "kitchenware", "health-supplements"),
    "PL": ("cosmetics", "chocolate"),
    "GR": ("olive-oil", "cosmetics", "cheese"),
}

# Relative share of the catalog's SKUs per country (France and Italy lead EU consumer exports
# to China). Rough judgement, not measured; the last seven are only used when a scenario
# lists them.
_COUNTRY_WEIGHTS: Final[dict[str, float]] = {
    "FR": 1.6,
    "IT": 1.4,
    "DE": 1.3,
    "ES": 0.8,
    "NL": 0.8,
    "BE": 0.5,
    "AT": 0.5,
    "PT": 0.5,
    "GB": 1.0,
    "CH": 0.7,
    "IE": 0.4,
    "DK": 0.4,
    "SE": 0.4,
    "PL": 0.3,
    "GR": 0.3,
}

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
    "GB": (
        ("Harrington", "Whitfield", "Ashby", "Cavendish", "Pemberton", "Hartley"),
        ("& Sons", "Ltd", "Trading", "of London"),
    ),
    "CH": (
        ("Zimmermann", "Meier", "Baumann", "Frei", "Suter", "Brunner"),
        ("AG", "& Cie", "SA", "Manufaktur"),
    ),
    "IE": (
        ("O'Brien", "Murphy", "Kelly", "Walsh", "Byrne", "Doyle"),
        ("& Co", "Ltd", "Foods", "Trading"),
    ),
    "DK": (
        ("Nielsen", "Jensen", "Hansen", "Larsen", "Madsen", "Kjaer"),
        ("A/S", "& Co", "Design", "Handel"),
    ),
    "SE": (
        ("Lindqvist", "Andersson", "Berglund", "Nystrom", "Sandberg", "Eklund"),
        ("AB", "& Son", "Design", "Handel"),
    ),
    "PL": (
        ("Kowalski", "Nowak", "Wisniewski", "Zielinski", "Lewandowski", "Kaminski"),
        ("Sp. z o.o.", "i Synowie", "Handel", "Manufaktura"),
    ),
    "GR": (
        ("Papadopoulos", "Georgiou", "Nikolaidis", "Dimitriou", "Vlachos", "Karras"),
        ("& Co", "S.A.", "Trading", "Bros"),
    ),
}

# The scenario model validates names against COUNTRIES and CATEGORY_NAMES: every table here
# must cover exactly those, or a valid scenario would build a broken catalog.
for _table in (_AFFINITIES, _COUNTRY_WEIGHTS, _MERCHANT_PARTS):
    if set(_table) != set(COUNTRIES):
        raise RuntimeError(f"catalog country tables and COUNTRIES disagree: {sorted(_table)}")
if tuple(c.name for c in CATEGORIES) != CATEGORY_NAMES:
    raise RuntimeError("CATEGORIES and CATEGORY_NAMES disagree")
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
    """The SKUs on sale, ready for weighted sampling.

    `weights` are the Zipf popularity of the ordinary SKUs; flash-sale SKUs weigh 0 there,
    since `PopularitySpec.hot_share` decides how often a line picks one (uniformly among
    `flash_indices`). `cum_weights` (alias `ordinary_cum_weights`) is aligned with `skus` for
    `bisect_right(cum_weights, random() * cum_weights[-1])`, which never lands on a zero weight.
    """

    __slots__ = (
        "by_id",
        "cum_weights",
        "flash_indices",
        "flash_skus",
        "ordinary_cum_weights",
        "skus",
        "weights",
    )

    def __init__(self, skus: tuple[Sku, ...], weights: tuple[float, ...]) -> None:
        if not skus or len(skus) != len(weights):
            raise ValueError("a catalog needs one popularity weight per SKU, and some SKUs")
        if any(not w >= 0 for w in weights):
            raise ValueError("popularity weights must be 0 or more")
        self.skus: tuple[Sku, ...] = skus
        self.weights: tuple[float, ...] = weights
        self.by_id: dict[str, Sku] = {s.sku: s for s in skus}
        if len(self.by_id) != len(skus):
            raise ValueError("SKU ids must be unique")
        self.cum_weights: list[float] = list(itertools.accumulate(weights))
        self.ordinary_cum_weights: list[float] = self.cum_weights
        self.flash_indices: tuple[int, ...] = tuple(i for i, s in enumerate(skus) if s.flash)
        self.flash_skus: tuple[Sku, ...] = tuple(skus[i] for i in self.flash_indices)

    def __len__(self) -> int:
        """Number of SKUs."""
        return len(self.skus)

    @classmethod
    def for_scenario(cls, scenario: Scenario) -> Catalog:
        """The catalog of `scenario`: its catalog and popularity specs, from its seed."""
        return cls.build(scenario.catalog, scenario.seed, scenario.popularity)

    @classmethod
    def build(
        cls, spec: CatalogSpec, seed: int, popularity: PopularitySpec | None = None
    ) -> Catalog:
        """Generate the catalog for `spec`, deterministically from `seed`.

        `popularity` gives the Zipf exponent (default: `PopularitySpec()`'s).
        """
        zipf_exponent = (popularity or PopularitySpec()).zipf_exponent
        # A string seed goes through SHA-512, not hash(), so it is stable across processes;
        # it also keeps the catalog's draws independent of the order stream's Random(seed).
        rng = random.Random(f"flashsale-catalog:{seed}")
        countries = spec.countries
        if not countries:
            raise ValueError("the catalog needs at least one country")
        # In table order, whatever order the spec lists them in: the same set draws the same.
        wanted = set(spec.categories)
        categories = tuple(
            dataclasses.replace(c, min_cents=low, max_cents=high)
            if (low, high) != (c.min_cents, c.max_cents)
            else c
            for c in CATEGORIES
            if c.name in wanted
            for low, high in [spec.price_cents.get(c.name, (c.min_cents, c.max_cents))]
        )
        if not categories:
            raise ValueError("the catalog needs at least one category")

        merchants = {c: _merchants(rng, c) for c in countries}
        country_cum = list(itertools.accumulate(_COUNTRY_WEIGHTS[c] for c in countries))
        category_cum = {
            c: list(itertools.accumulate(_category_weights(c, categories))) for c in countries
        }

        drafts: list[tuple[str, str, str, str, int]] = []
        serial: dict[tuple[str, str], int] = {}
        for i in range(spec.sku_count):
            # The first SKUs cover every country once, so small catalogs still span the spec.
            if i < len(countries):
                country = countries[i]
            else:
                country = rng.choices(countries, cum_weights=country_cum)[0]
            category = rng.choices(categories, cum_weights=category_cum[country])[0]
            n = serial[country, category.name] = serial.get((country, category.name), 0) + 1
            drafts.append(
                (
                    f"{country}-{category.code}-{n:04d}",
                    rng.choice(merchants[country]),
                    country,
                    category.name,
                    _price_cents(rng, category.min_cents, category.max_cents),
                )
            )

        flash = set(rng.sample(range(spec.sku_count), spec.flash_sku_count))
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

        # Zipf over the ordinary SKUs in a shuffled order; flash SKUs keep weight 0.
        order = list(range(spec.sku_count))
        rng.shuffle(order)
        weights = [0.0] * spec.sku_count
        ranks = itertools.count(1)
        for i in order:
            if i not in flash:
                weights[i] = 1.0 / next(ranks) ** zipf_exponent
        return cls(skus, tuple(weights))


def _merchants(rng: random.Random, country: str) -> tuple[str, ...]:
    """A few distinct merchant names for `country`."""
    firsts, seconds = _MERCHANT_PARTS[country]
    names = [f"{a} {b}" for a, b in itertools.product(firsts, seconds)]
    return tuple(rng.sample(names, min(_MERCHANTS_PER_COUNTRY, len(names))))


def _category_weights(country: str, categories: tuple[Category, ...]) -> list[float]:
    """Demand of each category, boosted for what `country` is known for."""
    specialties = _AFFINITIES[country]
    return [c.demand * (_SPECIALTY if c.name in specialties else 1.0) for c in categories]


def _price_cents(rng: random.Random, min_cents: int, max_cents: int) -> int:
    """A shelf price in [min_cents, max_cents]: log-uniform, as prices are, ending in .99.

    One `rng.random()` draw whatever the range. A range too narrow for a .99 price above its
    lower euro (or below 1 euro) gets a log-uniform price in whole cents instead.
    """
    u = rng.random()
    low_eur = min_cents // 100
    high_eur = max_cents // 100
    if low_eur >= 1 and high_eur > low_eur:
        euros = round(low_eur * (high_eur / low_eur) ** u)
        # Clamped so that `euros * 100 - 1` stays within [min_cents, max_cents].
        euros = min(high_eur, max(low_eur + 1, euros))
        return euros * 100 - 1
    return min(max_cents, max(min_cents, round(min_cents * (max_cents / min_cents) ** u)))
