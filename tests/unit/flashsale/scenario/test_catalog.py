"""The generated European catalog: size, spread, stock, popularity and determinism."""

from __future__ import annotations

import hashlib
import itertools
import random
from bisect import bisect_right
from collections import Counter

import pytest

from flashsale.scenario import DEFAULT_SCENARIO, get_scenario, parse_scenario
from flashsale.scenario.catalog import CATEGORIES, CHANNELS, PAYMENTS, PROVINCES, Catalog
from flashsale.scenario.model import CATEGORY_NAMES, COUNTRIES, CatalogSpec, PopularitySpec

SCENARIO = get_scenario(DEFAULT_SCENARIO)
SPEC = SCENARIO.catalog
SEED = SCENARIO.seed


def _catalog() -> Catalog:
    return Catalog.for_scenario(SCENARIO)


def test_default_catalog_is_large_and_spans_categories_and_countries() -> None:
    catalog = _catalog()
    assert len(catalog.skus) == SPEC.sku_count >= 500
    assert len({s.category for s in catalog.skus}) >= 8
    countries = {s.country for s in catalog.skus}
    assert countries == set(SPEC.countries)
    assert {"FR", "IT", "DE"} <= countries


def test_every_sku_is_complete_and_priced_within_its_category() -> None:
    ranges = {c.name: (c.min_cents, c.max_cents) for c in CATEGORIES}
    for sku in _catalog().skus:
        assert sku.merchant and sku.country and sku.category
        assert sku.unit_price_cents > 0
        assert sku.stock > 0
        low, high = ranges[sku.category]
        assert low <= sku.unit_price_cents <= high


def test_sku_ids_are_unique_and_follow_country_category_number() -> None:
    catalog = _catalog()
    ids = [s.sku for s in catalog.skus]
    assert len(set(ids)) == len(ids)
    assert catalog.by_id == {s.sku: s for s in catalog.skus}
    codes = {c.name: c.code for c in CATEGORIES}
    for sku in catalog.skus:
        country, code, number = sku.sku.split("-")
        assert country == sku.country
        assert code == codes[sku.category]
        assert len(number) == 4 and number.isdigit()


def test_flash_skus_have_small_stock_and_the_rest_ordinary_stock() -> None:
    catalog = _catalog()
    flash_low, flash_high = SPEC.flash_stock
    low, high = SPEC.stock
    assert len(catalog.flash_skus) == round(SPEC.flash_share * SPEC.sku_count) > 0
    assert catalog.flash_skus == tuple(catalog.skus[i] for i in catalog.flash_indices)
    assert catalog.flash_indices == tuple(i for i, s in enumerate(catalog.skus) if s.flash)
    for sku in catalog.skus:
        if sku.flash:
            assert flash_low <= sku.stock <= flash_high
        else:
            assert low <= sku.stock <= high


def test_ordinary_skus_follow_zipf_and_flash_skus_weigh_nothing() -> None:
    catalog = _catalog()
    s = SCENARIO.popularity.zipf_exponent
    flash = set(catalog.flash_indices)
    assert all(catalog.weights[i] == 0.0 for i in flash)
    ordinary = sorted((w for i, w in enumerate(catalog.weights) if i not in flash), reverse=True)
    assert ordinary == [1.0 / r**s for r in range(1, len(ordinary) + 1)]


def test_cum_weights_rise_over_ordinary_skus_and_stay_flat_over_flash_ones() -> None:
    catalog = _catalog()
    assert catalog.ordinary_cum_weights is catalog.cum_weights
    assert len(catalog.cum_weights) == len(catalog.skus)
    for i, (a, b) in enumerate(itertools.pairwise(catalog.cum_weights), start=1):
        assert b == a if catalog.skus[i].flash else b > a
    assert abs(catalog.cum_weights[-1] - sum(catalog.weights)) < 1e-9


def test_bisect_sampling_on_cum_weights_never_picks_a_flash_sku() -> None:
    catalog = _catalog()
    cum, total = catalog.cum_weights, catalog.cum_weights[-1]
    rng = random.Random(1)
    picks = Counter(bisect_right(cum, rng.random() * total) for _ in range(50_000))
    assert not set(picks) & set(catalog.flash_indices)
    top = max(range(len(catalog.weights)), key=catalog.weights.__getitem__)
    assert picks.most_common(1)[0][0] == top


def test_the_zipf_exponent_comes_from_the_popularity_spec() -> None:
    flat = Catalog.build(SPEC, SEED, PopularitySpec(zipf_exponent=0.0))
    assert {w for i, w in enumerate(flat.weights) if not flat.skus[i].flash} == {1.0}
    assert Catalog.build(SPEC, SEED).weights == _catalog().weights  # the default exponent
    assert flat.skus == _catalog().skus


def test_countries_lean_to_their_specialties() -> None:
    skus = _catalog().skus

    def share(country: str, category: str) -> float:
        mine = [s for s in skus if s.country == country]
        return sum(s.category == category for s in mine) / len(mine)

    overall_wine = sum(s.category == "wine" for s in skus) / len(skus)
    assert share("FR", "wine") > overall_wine
    assert share("BE", "chocolate") > sum(s.category == "chocolate" for s in skus) / len(skus)


def test_same_seed_gives_the_same_catalog() -> None:
    first, second = _catalog(), _catalog()
    assert first.skus == second.skus
    assert first.cum_weights == second.cum_weights


def test_the_default_catalog_is_pinned_sku_for_sku() -> None:
    # The draws are part of the contract: a recorded run replays against the same catalog.
    # (This is also the catalog the code built before hot_share and flash_count existed.)
    rows = "|".join(
        f"{s.sku},{s.merchant},{s.unit_price_cents},{s.stock},{s.flash}" for s in _catalog().skus
    )
    assert hashlib.sha256(rows.encode()).hexdigest()[:16] == "932f7b867a96570f"
    assert _catalog().skus[0].sku == "FR-HEA-0001"


def test_another_seed_gives_another_catalog() -> None:
    assert Catalog.build(SPEC, SEED + 1).skus != _catalog().skus


def test_small_catalog_still_covers_every_country() -> None:
    spec = CatalogSpec(sku_count=8)
    catalog = Catalog.build(spec, 3)
    assert {s.country for s in catalog.skus} == set(spec.countries)


def test_every_known_country_builds_with_its_own_merchants() -> None:
    spec = CatalogSpec(sku_count=3 * len(COUNTRIES), countries=COUNTRIES)
    catalog = Catalog.build(spec, 5)
    assert {s.country for s in catalog.skus} == set(COUNTRIES)
    for sku in catalog.skus:
        assert sku.merchant.isascii()


def test_known_names_are_the_catalog_tables() -> None:
    assert tuple(c.name for c in CATEGORIES) == CATEGORY_NAMES
    assert len(set(COUNTRIES)) == len(COUNTRIES) >= 8


def test_categories_can_be_narrowed_and_their_prices_overridden() -> None:
    spec = CatalogSpec(
        sku_count=200,
        categories=("wine", "chocolate"),
        price_cents={"wine": (10_000, 20_000), "chocolate": (50, 99)},
    )
    catalog = Catalog.build(spec, 7)
    assert {s.category for s in catalog.skus} == {"wine", "chocolate"}
    for sku in catalog.skus:
        low, high = spec.price_cents[sku.category]
        assert low <= sku.unit_price_cents <= high
    wine = [s.unit_price_cents for s in catalog.skus if s.category == "wine"]
    assert all(p % 100 == 99 for p in wine)
    # The order categories are listed in does not change the draws.
    swapped = spec.model_copy(update={"categories": ("chocolate", "wine")})
    assert Catalog.build(swapped, 7).skus == catalog.skus


def test_flash_count_sets_the_number_of_flash_skus_exactly() -> None:
    scenario = get_scenario("flash-drop")
    catalog = Catalog.for_scenario(scenario)
    assert len(catalog) == 1
    assert catalog.flash_indices == (0,)
    assert catalog.skus[0].stock == 1_000
    assert catalog.skus[0].category == "handbags"
    assert catalog.cum_weights == [0.0]
    spec = CatalogSpec(sku_count=50, flash_share=0.5, flash_count=4)
    assert len(Catalog.build(spec, 1).flash_indices) == 4


def test_a_scenario_with_only_flash_skus_needs_every_line_to_go_to_them() -> None:
    doc = {"name": "x", "catalog": {"sku_count": 3, "flash_count": 3}}
    with pytest.raises(ValueError, match="hot_share"):
        parse_scenario(doc)
    assert parse_scenario({**doc, "popularity": {"hot_share": 1}}).popularity.hot_share == 1


def test_buyer_tables_are_weighted_with_guangdong_first() -> None:
    assert len(PROVINCES) >= 15
    assert max(PROVINCES, key=lambda p: p[1])[0] == "Guangdong"
    for table in (PROVINCES, CHANNELS, PAYMENTS):
        names = [name for name, _ in table]
        assert len(set(names)) == len(names)
        assert all(weight > 0 for _, weight in table)
    assert {"alipay", "wechat-pay", "unionpay", "huabei"} <= {name for name, _ in PAYMENTS}
