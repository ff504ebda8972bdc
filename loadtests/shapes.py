"""`SinglesDayShape`: locust users over time following a scenario's curve.

Imported by the locustfile only: locust patches the process it is imported in with gevent.
"""

from __future__ import annotations

import functools

from locust import LoadTestShape

from flashsale.scenario.curves import Curve
from loadtests.options import LoadOptions, scenario_of
from loadtests.run import end_run, options

__all__ = ["SinglesDayShape"]


class SinglesDayShape(LoadTestShape):
    """Users over time for `--flashsale-duration` seconds: `singles-day` scales
    `--flashsale-users` by the curve's share of its peak at each second (on the scenario's
    own clock), `constant` holds them. Without `--flashsale-shape`, not used."""

    def __init__(self) -> None:
        super().__init__()
        self.last_users = 0

    @staticmethod
    def users_at(opts: LoadOptions, run_s: float) -> int:
        """Users `run_s` seconds into the run."""
        if opts.shape == "constant":
            return opts.users
        scenario = opts.load()
        share = _curve(opts.scenario, opts.seed).fraction(run_s * scenario.scale.compression)
        return max(1, round(opts.users * share))

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        try:
            opts = options(self.runner.environment)
        except ValueError as exc:
            end_run(self.runner.environment, str(exc))
            return None
        run_s = self.get_run_time()
        if run_s >= opts.duration_s:
            return None
        users = self.users_at(opts, run_s)
        # Reach each second's user count within that second.
        spawn_rate = float(max(abs(users - self.last_users), 1))
        self.last_users = users
        return users, spawn_rate


@functools.lru_cache(maxsize=4)
def _curve(spec: str, seed: int | None) -> Curve:
    return Curve(scenario_of(spec, seed))
