"""The generated European catalog: size, spread, stock and determinism."""

from __future__ import annotations

import itertools

from flashsale.scenario import CatalogSpec, get_scenario
from producers.catalog import CATEGORIES, CHANNELS, PAYMENTS, PROVINCES, Catalog

SPEC = get_scenario("singles-day").catalog
SEED = get_scenario("singles-day").seed


def _catalog() -> Catalog:
    return Catalog.build(SPEC, SEED)


def test_default_catalog_is_large_and_spans_categories_and_countries() -> None:
    catalog = _catalog()
    assert len(catalog.skus) == SPEC.sku_count >= 500
    assert len({s.category for s in catalog.skus}) >= 8
    countries = {s.country for s in catalog.skus}
    assert len(countries) >= 6
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
    assert all(s.flash for s in catalog.flash_skus)
    for sku in catalog.skus:
        if sku.flash:
            assert flash_low <= sku.stock <= flash_high
        else:
            assert low <= sku.stock <= high


def test_flash_skus_are_boosted_in_popularity() -> None:
    catalog = _catalog()
    weights = dict(zip(catalog.skus, catalog.weights, strict=True))
    flash_mean = sum(weights[s] for s in catalog.flash_skus) / len(catalog.flash_skus)
    overall_mean = sum(catalog.weights) / len(catalog.weights)
    assert flash_mean > overall_mean


def test_cum_weights_are_increasing_and_match_the_weights() -> None:
    catalog = _catalog()
    assert len(catalog.cum_weights) == len(catalog.skus)
    assert all(b > a for a, b in itertools.pairwise(catalog.cum_weights))
    assert abs(catalog.cum_weights[-1] - sum(catalog.weights)) < 1e-9


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


def test_another_seed_gives_another_catalog() -> None:
    assert Catalog.build(SPEC, SEED + 1).skus != _catalog().skus


def test_small_catalog_still_covers_every_country() -> None:
    spec = CatalogSpec(sku_count=8)
    catalog = Catalog.build(spec, 3)
    assert {s.country for s in catalog.skus} == set(spec.countries)


def test_buyer_tables_are_weighted_with_guangdong_first() -> None:
    assert len(PROVINCES) >= 15
    assert max(PROVINCES, key=lambda p: p[1])[0] == "Guangdong"
    for table in (PROVINCES, CHANNELS, PAYMENTS):
        names = [name for name, _ in table]
        assert len(set(names)) == len(names)
        assert all(weight > 0 for _, weight in table)
    assert {"alipay", "wechat-pay", "unionpay", "huabei"} <= {name for name, _ in PAYMENTS}
