"""The soak's verdict: memory growth past the bound after the warm-up, and a lag that keeps
rising, each named in one line; a healthy run passes."""

from __future__ import annotations

from orchestration.soak import LAG_FLOOR, LAG_FLOOR_S, SoakSample, judge


def run(
    n: int = 60,
    worker: float = 120.0,
    worker_growth: float = 0.0,
    broker_growth: float = 0.0,
    lag: int = 200,
    lag_growth: int = 0,
) -> list[SoakSample]:
    """n samples 10 s apart; each value grows linearly by the given total over the run."""
    return [
        SoakSample(
            t_s=10.0 * i,
            rss_mb={
                "broker": 60 + broker_growth * i / n,
                "worker": worker + worker_growth * i / n,
                "gateway": 75.0,
                "producer": 90.0,
            },
            lag=lag + lag_growth * i // n,
            p50_ms=40.0,
            p99_ms=120.0,
        )
        for i in range(n)
    ]


def test_a_steady_run_passes() -> None:
    assert judge(run(), max_growth_mb=64) == []


def test_memory_grown_past_the_bound_after_the_warm_up_fails_naming_the_process() -> None:
    problems = judge(run(worker_growth=200), max_growth_mb=64)
    assert len(problems) == 1
    assert problems[0].startswith("worker memory grew")
    assert "bound of 64 MB" in problems[0]


def test_growth_within_the_bound_passes() -> None:
    assert judge(run(worker_growth=40), max_growth_mb=64) == []


def test_growth_during_the_warm_up_only_passes() -> None:
    samples = run()
    for s in samples[:10]:  # the first fifth of the run: warming up
        s.rss_mb["worker"] = 20.0 + s.t_s
    assert judge(samples, max_growth_mb=64) == []


def test_the_embedded_brokers_memory_is_the_data_it_stores_and_is_not_judged() -> None:
    assert judge(run(broker_growth=4_000), max_growth_mb=64) == []


def test_a_lag_that_keeps_rising_fails() -> None:
    problems = judge(run(lag_growth=50_000), max_growth_mb=64)
    assert len(problems) == 1
    assert problems[0].startswith("consumer lag kept rising")


def test_a_lag_that_rises_and_comes_back_down_passes() -> None:
    samples = run()
    for s in samples[20:40]:
        s.lag = 80_000  # a burst the worker then caught up with
    assert judge(samples, max_growth_mb=64) == []


def test_a_small_lag_is_never_rising() -> None:
    assert judge(run(lag=0, lag_growth=LAG_FLOOR - 1), max_growth_mb=64) == []


def test_a_lag_the_worker_clears_in_seconds_is_never_rising_at_any_scale() -> None:
    # 5,000 events/s: a backlog under five seconds of that is a busy moment, not a fall.
    samples = run(lag=0, lag_growth=int(LAG_FLOOR_S * 5_000) - 1)
    for s in samples:
        s.rate_per_s = 5_000.0
    assert judge(samples, max_growth_mb=64) == []
    for s in samples:
        s.lag = (s.lag or 0) * 3
    assert judge(samples, max_growth_mb=64)[0].startswith("consumer lag kept rising")


def test_too_few_samples_is_a_problem_not_a_pass() -> None:
    assert judge(run(n=4), max_growth_mb=64) == [
        "only 4 samples: run longer than a few sample intervals"
    ]
