"""The order stream: every event a pure function of (seed, sequence number), vectorised.

Order `s` (a basket) is created at the scenario time the curve gives its sequence number; its
lines, buyer, quantities, later lifecycle (paid, cancelled, refunded), out-of-order delivery and
client retries all come from counter-based random draws `u(seed, field, s, ...)` (a SplitMix64
hash), never from a shared random state. So the stream does not depend on how it is cut into
blocks or split across processes: `workers=N, worker=w` generates the orders `s % N == w`, and
the N streams together are exactly the one-process stream.

Emission order is total and deterministic: by emission time, then order, line, event type and
copy (a client retry is copy 1). An event due later than the block being generated waits in a
two-level calendar (fine 10 ms cells near the present, coarse 1 s buckets further on), so a
paid event 20 s or a refund an hour after its order costs O(1) to hold.

Values are encoded from per-SKU and per-buyer byte templates, one `bytes %` per event: the
generator writes JSON several times faster than building a dict and calling orjson per event.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from flashsale.events import SCHEMA_VERSION, OrderEvent, encode_packed
from flashsale.scenario import Scenario
from flashsale.scenario.catalog import CHANNELS, PAYMENTS, PROVINCES, Catalog
from flashsale.scenario.curves import Curve, scenario_start_ms

__all__ = ["BOT_CHANNEL", "EVENT_TYPES", "GRID_S", "Block", "Generator"]

#: The scheduling grid in wall seconds: order `s` is placed inside its 10 ms cell, whatever
#: block size a caller asks for, so block size never changes a byte of the stream.
GRID_S: Final = 0.01
#: Events are grouped into coarse buckets of this many grid cells while far in the future.
_COARSE_CELLS: Final = 100
#: Type codes in emission tie-break order.
EVENT_TYPES: Final = ("created", "paid", "cancelled", "refunded")
_CREATED, _PAID, _CANCELLED, _REFUNDED = range(4)
BOT_CHANNEL: Final = "bot"
_LINE_STRIDE: Final = 32  # lines per order in the draw index (basket_max_lines <= 20)
_MAX_QUANTITY: Final = 6

# Cumulative quantity distribution: ~70% buy one, 20% two, 7% three, 3% four to six.
_QUANTITY_CUM: Final = np.array([0.70, 0.90, 0.97, 0.98, 0.99])

_EVENT_DTYPE: Final = np.dtype(
    [
        ("e", "f8"),  # emission, wall seconds from the run's start
        ("seq", "i8"),
        ("line", "i2"),
        ("typ", "i1"),
        ("copy", "i1"),
        ("sku", "i4"),
        ("qty", "i4"),
        ("buyer", "i4"),
        ("ts", "i8"),  # event time, epoch ms
    ]
)

_MASK64: Final = (1 << 64) - 1
_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_M1: Final = np.uint64(0xBF58476D1CE4E5B9)
_M2: Final = np.uint64(0x94D049BB133111EB)
_TO_UNIT: Final = 2.0**-53


def _mix_int(x: int) -> int:
    """SplitMix64's finaliser on a Python int (for salts)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class _Draws:
    """Uniform [0, 1) draws as a pure function of (seed, field, index)."""

    def __init__(self, seed: int) -> None:
        self._salts: dict[str, np.uint64] = {}
        self._seed = seed

    def salt(self, field: str) -> np.uint64:
        salt = self._salts.get(field)
        if salt is None:
            h = _mix_int(self._seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019)
            for ch in field.encode():
                h = _mix_int(h ^ ch)
            salt = self._salts[field] = np.uint64(h)
        return salt

    def u(self, field: str, index: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
        x = index * _GOLDEN + self.salt(field)
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
        return (x >> np.uint64(11)).astype(np.float64) * _TO_UNIT


@dataclass(slots=True)
class Block:
    """Events due in wall interval [start_s, end_s), in emission order."""

    start_s: float
    end_s: float
    rows: npt.NDArray[np.void]
    generator: Generator
    index: npt.NDArray[np.int64]
    """Each row's position in this generator's stream (0 = its first order event); the
    `flashsale.seq` header a producer resumes from (docs/reliability.md)."""

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, mask: npt.NDArray[np.bool_]) -> Block:
        """The rows where `mask` holds, with their stream positions."""
        return Block(self.start_s, self.end_s, self.rows[mask], self.generator, self.index[mask])

    @property
    def keys(self) -> list[bytes]:
        """The Kafka key (SKU) of each event."""
        sku_keys = self.generator._sku_keys
        return [sku_keys[i] for i in self.rows["sku"].tolist()]

    def values(self, emit_ns: int | None = None) -> list[bytes]:
        """Each event's JSON value. `emit_ns=None` stamps the scenario-clock emission time
        (deterministic, for files); otherwise every event carries `emit_ns`."""
        return self.generator._encode(self.rows, emit_ns)

    def events(self, emit_ns: int | None = None) -> list[OrderEvent]:
        """The same events as objects (slow; for tests and small tools)."""
        return self.generator._objects(self.rows, emit_ns)

    def packed(
        self, pack: int, partitions: int, emit_ns: int | None = None
    ) -> list[tuple[int, bytes, int]]:
        """The block as packed messages: (partition, value, events) with at most `pack`
        events each, every event on the partition its SKU key hashes to (as a keyed send
        would place it), in emission order within each partition."""
        return [(p, v, n) for p, v, n, _ in self.packed_with_seq(pack, partitions, emit_ns)]

    def packed_with_seq(
        self, pack: int, partitions: int, emit_ns: int | None = None
    ) -> list[tuple[int, bytes, int, int]]:
        """`packed`, each message with the stream position of its last event."""
        g = self.generator
        rows = self.rows
        if not len(rows):
            return []
        plain, coded = g._coded_columns(rows, emit_ns)
        parts = g._sku_partitions(partitions)[rows["sku"]]
        order = np.argsort(parts, kind="stable")
        bounds = np.searchsorted(parts[order], np.arange(partitions + 1))
        out: list[tuple[int, bytes, int, int]] = []
        index = self.index
        for p in range(partitions):
            mine = order[bounds[p] : bounds[p + 1]]
            for start in range(0, len(mine), pack):
                chunk = mine[start : start + pack]
                columns = {name: col[chunk].tolist() for name, col in plain.items()}
                dictionary: dict[str, list[str]] = {}
                for codes, names in coded:
                    # Codes into the values this message uses (the catalog is far larger).
                    used, local = np.unique(codes[chunk], return_inverse=True)
                    local_codes = local.tolist()
                    for name, table in names:
                        columns[name] = local_codes
                        dictionary[name] = table[used].tolist()
                seq = int(index[chunk[-1]])
                out.append((p, encode_packed(columns, dictionary), len(chunk), seq))
        return out


class Generator:
    """A scenario's restocks and its reproducible, paced stream of order events."""

    def __init__(self, scenario: Scenario, worker: int = 0, workers: int = 1) -> None:
        if not 0 <= worker < workers:
            raise ValueError(f"worker must be in 0..{workers - 1}, got {worker}")
        self.scenario: Scenario = scenario
        self.worker = worker
        self.workers = workers
        self.catalog: Catalog = Catalog.for_scenario(scenario)
        self.curve = Curve(scenario)
        self.start_ms: int = scenario_start_ms(scenario)
        self._draws = _Draws(scenario.seed)
        skus = self.catalog.skus
        self._sku_keys: list[bytes] = [s.sku.encode() for s in skus]
        self._flash = np.array(self.catalog.flash_indices, dtype=np.int64)
        ordinary_cum = np.array(self.catalog.cum_weights, dtype=np.float64)
        self._ordinary_cum = ordinary_cum if ordinary_cum[-1] > 0 else None
        self._prov_cum = _cum(PROVINCES)
        self._chan_cum = _cum(CHANNELS)
        self._pay_cum = _cum(PAYMENTS)
        self._provinces = [name for name, _ in PROVINCES]
        self._channels = [name for name, _ in CHANNELS] + [BOT_CHANNEL]
        self._payments = [name for name, _ in PAYMENTS]
        self._n_chan = len(self._channels)
        self._n_pay = len(self._payments)
        self._max_lines = scenario.mix.basket_max_lines
        self._templates()

    # -- restocks -------------------------------------------------------------------------

    def restocks(self) -> list[OrderEvent]:
        """One restock per SKU, in catalog order, loading its initial stock at 00:00."""
        return [
            OrderEvent(
                order_id=f"restock-{s.sku}",
                type="restock",
                event_ts_ms=self.start_ms,
                sku=s.sku,
                merchant=s.merchant,
                country=s.country,
                category=s.category,
                quantity=s.stock,
                unit_price_cents=s.unit_price_cents,
                province="",
                channel="",
                payment="",
                emit_ns=0,
            )
            for s in self.catalog.skus
        ]

    # -- the stream -----------------------------------------------------------------------

    def blocks(
        self,
        duration_s: float | None = None,
        max_events: int | None = None,
        block_s: float = GRID_S,
        until: tuple[float, int, int, int, int] | None = None,
    ) -> Iterator[Block]:
        """Blocks of `block_s` wall seconds (a multiple of 10 ms), in emission order.

        Stops at `duration_s` wall seconds (default: the scenario's horizon), after
        `max_events` events of this generator, or after the event whose sort key is `until`
        (see `cutoff`), whichever comes first. Events due after the end are not emitted.
        """
        if block_s < GRID_S or abs(block_s / GRID_S - round(block_s / GRID_S)) > 1e-9:
            raise ValueError(f"block_s must be a positive multiple of {GRID_S}, got {block_s}")
        if duration_s is not None and duration_s < 0:
            raise ValueError(f"duration_s must not be negative, got {duration_s}")
        if max_events is not None and max_events < 0:
            raise ValueError(f"max_events must not be negative, got {max_events}")
        horizon = self._horizon()
        end = horizon if duration_s is None else min(duration_s, horizon)
        return self._blocks(end, max_events, round(block_s / GRID_S), until)

    def cutoff(
        self, n_events: int, duration_s: float | None = None
    ) -> tuple[float, int, int, int, int] | None:
        """Sort key of the stream's `n_events`-th event over all workers (None: fewer exist).

        Every worker of a split run stops at this key, so together they emit exactly the
        first `n_events` events of the one-process stream.
        """
        whole = Generator(self.scenario) if self.workers > 1 else self
        seen = 0
        end = self._horizon() if duration_s is None else min(duration_s, self._horizon())
        for block in whole._blocks(end, None, 100, None):
            if seen + len(block) >= n_events:
                row = block.rows[n_events - seen - 1]
                return (
                    float(row["e"]),
                    int(row["seq"]),
                    int(row["line"]),
                    int(row["typ"]),
                    int(row["copy"]),
                )
            seen += len(block)
        return None

    def _horizon(self) -> float:
        return self.scenario.curve.horizon_s / self.scenario.scale.compression

    def _blocks(
        self,
        end_s: float,
        max_events: int | None,
        cells_per_block: int,
        until: tuple[float, int, int, int, int] | None,
    ) -> Iterator[Block]:
        fine: dict[int, list[npt.NDArray[np.void]]] = {}
        coarse: dict[int, list[npt.NDArray[np.void]]] = {}
        emitted = 0
        n_cells = math.ceil(end_s / GRID_S - 1e-9)
        cell = 0
        while cell < n_cells:
            last = min(cell + cells_per_block, n_cells)
            start_s = cell * GRID_S
            block_end = min(last * GRID_S, end_s)
            # Open the coarse buckets the block reaches (and the next one), cell by cell.
            for bucket in range(cell // _COARSE_CELLS, last // _COARSE_CELLS + 2):
                chunks = coarse.pop(bucket, None)
                if chunks is not None:
                    _file_fine(fine, np.concatenate(chunks), cell)
            born = self._orders(cell, last)
            parts = [fine.pop(c) for c in range(cell, last) if c in fine]
            pending = [p for chunk in parts for p in chunk]
            if len(born):
                # Due means "in a cell of this block": one integer rule, whatever the block size.
                born_cells = _cells(born)
                due_now = born_cells < last
                pending.append(born[due_now])
                if not due_now.all():
                    self._file(fine, coarse, born[~due_now], born_cells[~due_now], last)
            rows = np.concatenate(pending) if pending else np.empty(0, _EVENT_DTYPE)
            if len(rows):
                rows = rows[
                    np.lexsort((rows["copy"], rows["typ"], rows["line"], rows["seq"], rows["e"]))
                ]
                rows = rows[rows["e"] < end_s]
            if until is not None and len(rows):
                keys = (rows["e"], rows["seq"], rows["line"], rows["typ"], rows["copy"])
                stop = _first_after(keys, until)
                if stop < len(rows):
                    rows = rows[:stop]
                    yield Block(start_s, block_end, rows, self, _positions(emitted, len(rows)))
                    return
            if max_events is not None and emitted + len(rows) >= max_events:
                rows = rows[: max_events - emitted]
                yield Block(start_s, block_end, rows, self, _positions(emitted, len(rows)))
                return
            yield Block(start_s, block_end, rows, self, _positions(emitted, len(rows)))
            emitted += len(rows)
            cell = last

    def _file(
        self,
        fine: dict[int, list[npt.NDArray[np.void]]],
        coarse: dict[int, list[npt.NDArray[np.void]]],
        rows: npt.NDArray[np.void],
        cells: npt.NDArray[np.int64],
        now_cell: int,
    ) -> None:
        """Hold events due after this block: near ones per cell, far ones per coarse bucket."""
        near_limit = (now_cell // _COARSE_CELLS + 2) * _COARSE_CELLS
        near = cells < near_limit
        if near.any():
            _file_fine(fine, rows[near], now_cell, cells[near])
        far = ~near
        if far.any():
            _append_grouped(coarse, rows[far], cells[far] // _COARSE_CELLS)

    def _orders(self, first_cell: int, last_cell: int) -> npt.NDArray[np.void]:
        """Every event of the orders created in cells [first_cell, last_cell) of this worker."""
        curve = self.curve
        bounds = [
            math.floor(curve.emitted_by(c * GRID_S)) for c in range(first_cell, last_cell + 1)
        ]
        counts: npt.NDArray[np.int64] = np.diff(np.array(bounds, dtype=np.int64)).astype(np.int64)
        total = int(counts.sum())
        if total == 0:
            return np.empty(0, _EVENT_DTYPE)
        seq = np.arange(bounds[0], bounds[-1], dtype=np.int64)
        # Place each order inside its cell: (i + 0.5) / n of the way through.
        cell_of = np.repeat(np.arange(first_cell, last_cell, dtype=np.int64), counts)
        first_of_cell = np.repeat(np.array(bounds[:-1], dtype=np.int64), counts)
        n_of_cell = np.repeat(counts, counts).astype(np.float64)
        wall = (cell_of + ((seq - first_of_cell) + 0.5) / n_of_cell) * GRID_S
        if self.workers > 1:
            mine = seq % self.workers == self.worker
            seq = seq[mine]
            wall = wall[mine]
            if not len(seq):
                return np.empty(0, _EVENT_DTYPE)
        return self._expand(seq, wall)

    def _expand(
        self, seq: npt.NDArray[np.int64], wall: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.void]:
        """Orders -> lines -> lifecycle events -> out-of-order delivery and retries."""
        sc = self.scenario
        mix = sc.mix
        compression = sc.scale.compression
        d = self._draws
        s64 = seq.astype(np.uint64)

        # Per order: bot?, basket size, buyer.
        bot = d.u("bot", s64) < mix.bot_share if len(self._flash) else np.zeros(len(seq), bool)
        lines = np.ones(len(seq), dtype=np.int64)
        extra_mean = mix.basket_mean_lines - 1.0
        if extra_mean > 0 and mix.basket_max_lines > 1:
            p = extra_mean / (extra_mean + 1.0)  # geometric number of extra lines, mean m - 1
            u = d.u("basket", s64)
            extra = np.floor(np.log1p(-u) / math.log(p)).astype(np.int64)
            lines = 1 + np.minimum(extra, mix.basket_max_lines - 1)
        lines[bot] = 1
        prov = np.searchsorted(self._prov_cum, d.u("province", s64), side="right")
        chan = np.searchsorted(self._chan_cum, d.u("channel", s64), side="right")
        chan[bot] = self._n_chan - 1
        pay = np.searchsorted(self._pay_cum, d.u("payment", s64), side="right")
        buyer = (prov * self._n_chan + chan) * self._n_pay + pay

        # Per line.
        n_lines = int(lines.sum())
        order_of = np.repeat(np.arange(len(seq)), lines)
        line = np.arange(n_lines) - np.repeat(np.cumsum(lines) - lines, lines)
        lseq = seq[order_of]
        lidx = lseq.astype(np.uint64) * np.uint64(_LINE_STRIDE) + line.astype(np.uint64)
        lbot = bot[order_of]
        hot = (d.u("hot", lidx) < sc.popularity.hot_share) | lbot
        pick = d.u("pick", lidx)
        sku = np.empty(n_lines, dtype=np.int64)
        if len(self._flash):
            flash_pick = self._flash[
                np.minimum((pick * len(self._flash)).astype(np.int64), len(self._flash) - 1)
            ]
        else:
            flash_pick = np.zeros(n_lines, dtype=np.int64)
            hot[:] = False
        if self._ordinary_cum is None:
            hot[:] = True
            ordinary_pick = flash_pick
        else:
            cum = self._ordinary_cum
            ordinary_pick = np.minimum(
                np.searchsorted(cum, pick * cum[-1], side="right"), len(cum) - 1
            )
        sku = np.where(hot, flash_pick, ordinary_pick)
        qty = 1 + np.searchsorted(_QUANTITY_CUM, d.u("quantity", lidx), side="right")
        qty[lbot] = 1
        lbuyer = buyer[order_of]
        created_t = wall[order_of] * compression  # scenario seconds

        # Lifecycle: paid, or cancelled (failed payment at the timeout, or by the buyer).
        fate = d.u("fate", lidx)
        when = d.u("when", lidx)
        failed = fate < mix.payment_failure_rate
        cancelled = ~failed & (fate < mix.payment_failure_rate + mix.cancellation_rate)
        paid = ~(failed | cancelled)
        second_t = np.where(
            failed,
            created_t + mix.unpaid_timeout_s,
            np.where(
                cancelled,
                created_t + when * mix.unpaid_timeout_s,
                created_t - mix.pay_delay_mean_s * np.log1p(-when),
            ),
        )
        second_typ = np.where(paid, _PAID, _CANCELLED)
        refunded = paid & (d.u("refund", lidx) < mix.refund_rate)
        third_t = second_t - mix.refund_delay_mean_s * np.log1p(-d.u("refund_when", lidx))

        # One row per event (created; paid or cancelled; refunded), then delivery.
        r_idx = np.flatnonzero(refunded)
        idx = np.concatenate([np.arange(n_lines), np.arange(n_lines), r_idx])
        typ = np.concatenate(
            [np.full(n_lines, _CREATED), second_typ, np.full(len(r_idx), _REFUNDED)]
        )
        t = np.concatenate([created_t, second_t, third_t[r_idx]])
        slot = np.concatenate(
            [np.zeros(n_lines, np.int64), np.ones(n_lines, np.int64), np.full(len(r_idx), 2)]
        )
        eidx = lidx[idx] * np.uint64(4) + slot.astype(np.uint64)
        late = d.u("late", eidx) < mix.out_of_order_share
        delay = self._delays(d.u("late_by", eidx))
        emit_t = t + np.where(late, delay, 0.0)
        # A line's events leave in causal order: never paid before its order was delivered.
        n2 = n_lines * 2
        emit_t[n_lines:n2] = np.maximum(emit_t[n_lines:n2], emit_t[:n_lines] + 1e-6)
        if len(r_idx):
            emit_t[n2:] = np.maximum(emit_t[n2:], emit_t[n_lines + r_idx] + 1e-6)

        rows = np.empty(len(idx), _EVENT_DTYPE)
        rows["e"] = emit_t / compression
        rows["seq"] = lseq[idx]
        rows["line"] = line[idx]
        rows["typ"] = typ
        rows["copy"] = 0
        rows["sku"] = sku[idx]
        rows["qty"] = qty[idx]
        rows["buyer"] = lbuyer[idx]
        rows["ts"] = self.start_ms + np.floor(t * 1000.0).astype(np.int64)

        retry = d.u("retry", eidx) < mix.duplicate_rate
        if retry.any():
            copies = rows[retry]
            gap = (d.u("retry_by", eidx[retry]) * mix.duplicate_max_delay_s + 1e-6) / compression
            copies["e"] = copies["e"] + gap
            copies["copy"] = 1
            rows = np.concatenate([rows, copies])
        return rows

    def _delays(self, u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        spec = self.scenario.mix.out_of_order_delay
        if spec.distribution == "uniform":
            return u * spec.max_s
        return np.minimum(-spec.mean_s * np.log1p(-u), spec.max_s)

    # -- encoding -------------------------------------------------------------------------

    def _templates(self) -> None:
        """Byte fragments per (SKU, type) and per buyer, JSON-escaped once."""
        seed = self.scenario.seed
        heads: list[bytes] = []
        for s in self.catalog.skus:
            fixed = (
                f'"sku":{_js(s.sku)},"merchant":{_js(s.merchant)},"country":{_js(s.country)},'
                f'"category":{_js(s.category)},"unit_price_cents":{s.unit_price_cents},'
            )
            heads.extend(
                f'{{"v":{SCHEMA_VERSION},"type":"{kind}",{fixed}"order_id":"o{seed}-'.encode()
                for kind in EVENT_TYPES
            )
        self._heads = heads
        # Buyer, line and quantity together: one fragment from the order id's end to the
        # event time, so encoding an event is a single `%` with five arguments.
        self._mids = [
            f'","province":{_js(p)},"channel":{_js(c)},"payment":{_js(y)},"line":{ln},'
            f'"quantity":{q},"event_ts_ms":'.encode()
            for p in self._provinces
            for c in self._channels
            for y in self._payments
            for ln in range(self._max_lines)
            for q in range(1, _MAX_QUANTITY + 1)
        ]

    def _encode(self, rows: npt.NDArray[np.void], emit_ns: int | None) -> list[bytes]:
        if emit_ns is not None and len(rows) and self._fixed_width_fits(rows, emit_ns):
            return self._encode_fixed(rows, emit_ns)
        heads = self._heads
        mids = self._mids
        head_idx = (rows["sku"].astype(np.int64) * 4 + rows["typ"]).tolist()
        mid_idx = self._mid_index(rows).tolist()
        seqs = rows["seq"].tolist()
        stamps = rows["ts"].tolist()
        if emit_ns is not None:
            tail = b',"emit_ns":%d}' % emit_ns
            return [
                b"%b%09d%b%d%b" % (heads[h], s, mids[m], ts, tail)
                for h, s, m, ts in zip(head_idx, seqs, mid_idx, stamps, strict=True)
            ]
        emits = self._scenario_emit_ns(rows).tolist()
        return [
            b'%b%09d%b%d,"emit_ns":%d}' % (heads[h], s, mids[m], ts, em)
            for h, s, m, ts, em in zip(head_idx, seqs, mid_idx, stamps, emits, strict=True)
        ]

    def _mid_index(self, rows: npt.NDArray[np.void]) -> npt.NDArray[np.int64]:
        return (rows["buyer"].astype(np.int64) * self._max_lines + rows["line"]) * _MAX_QUANTITY + (
            rows["qty"].astype(np.int64) - 1
        )

    # The wire path: every value of a block the same width, assembled by numpy in one buffer
    # and sliced. JSON allows whitespace between tokens, so each fragment is padded with
    # spaces to the longest of its kind (after `{` and after the `",` that closes the order
    # id); numbers keep their exact digits: order ids 9 (`%09d`), event times 13, emit 19.

    @staticmethod
    def _fixed_width_fits(rows: npt.NDArray[np.void], emit_ns: int) -> bool:
        ts = rows["ts"]
        return (
            int(rows["seq"].max()) < 10**9
            and int(ts.min()) >= 10**12
            and int(ts.max()) < 10**13
            and 10**18 <= emit_ns < 10**19
        )

    def _fixed_tables(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        tables = getattr(self, "_fixed", None)
        if tables is None:
            heads = self._heads
            width = max(len(h) for h in heads)
            head_table = np.frombuffer(
                b"".join(b"{" + b" " * (width - len(h)) + h[1:] for h in heads), dtype=np.uint8
            ).reshape(len(heads), width)
            mid_width = max(len(m) for m in self._mids)
            mid_table = np.frombuffer(
                b"".join(b'",' + b" " * (mid_width - len(m)) + m[2:] for m in self._mids),
                dtype=np.uint8,
            ).reshape(len(self._mids), mid_width)
            tables = self._fixed = (head_table, mid_table)
        return tables

    def _encode_fixed(self, rows: npt.NDArray[np.void], emit_ns: int) -> list[bytes]:
        head_table, mid_table = self._fixed_tables()
        tail = np.frombuffer(b',"emit_ns":%d}' % emit_ns, dtype=np.uint8)
        wh, wm = head_table.shape[1], mid_table.shape[1]
        width = wh + 9 + wm + 13 + len(tail)
        n = len(rows)
        out = np.empty((n, width), dtype=np.uint8)
        out[:, :wh] = head_table[rows["sku"].astype(np.int64) * 4 + rows["typ"]]
        at = wh
        out[:, at : at + 9] = _digits(rows["seq"], 9)
        at += 9
        out[:, at : at + wm] = mid_table[self._mid_index(rows)]
        at += wm
        out[:, at : at + 13] = _digits(rows["ts"], 13)
        at += 13
        out[:, at:] = tail
        buf = out.tobytes()
        return [buf[i : i + width] for i in range(0, n * width, width)]

    def _sku_partitions(self, partitions: int) -> npt.NDArray[np.int64]:
        """The partition each SKU's key hashes to (Kafka's murmur2 partitioner)."""
        cached = getattr(self, "_partition_table", None)
        if cached is None or cached[0] != partitions:
            from aiokafka.partitioner import DefaultPartitioner

            every = list(range(partitions))
            table = np.array(
                [DefaultPartitioner()(key, every, every) for key in self._sku_keys],
                dtype=np.int64,
            )
            cached = self._partition_table = (partitions, table)
        return cached[1]

    def _coded_columns(
        self, rows: npt.NDArray[np.void], emit_ns: int | None
    ) -> tuple[
        dict[str, npt.NDArray[Any]],
        list[tuple[npt.NDArray[np.int64], list[tuple[str, npt.NDArray[Any]]]]],
    ]:
        """The events of `rows` as packed columns: the plain ones (ids and numbers, numpy
        arrays), and the text ones as (codes, [(column, values by code)]), columns that share
        codes grouped (a SKU's merchant, country and category follow its code)."""
        tables = getattr(self, "_column_tables", None)
        if tables is None:
            skus = self.catalog.skus
            tables = self._column_tables = {
                "sku": np.array([s.sku for s in skus], dtype=object),
                "merchant": np.array([s.merchant for s in skus], dtype=object),
                "country": np.array([s.country for s in skus], dtype=object),
                "category": np.array([s.category for s in skus], dtype=object),
                "unit_price_cents": np.array([s.unit_price_cents for s in skus], dtype=np.int64),
                "type": np.array(EVENT_TYPES, dtype=object),
                "province": np.array(self._provinces, dtype=object),
                "channel": np.array(self._channels, dtype=object),
                "payment": np.array(self._payments, dtype=object),
            }
        sku = rows["sku"].astype(np.int64)
        prov, rest = np.divmod(rows["buyer"].astype(np.int64), self._n_chan * self._n_pay)
        chan, pay = np.divmod(rest, self._n_pay)
        seed = self.scenario.seed
        n = len(rows)
        emits = (
            self._scenario_emit_ns(rows) if emit_ns is None else np.full(n, emit_ns, dtype=np.int64)
        )
        plain = {
            "order_id": np.array([f"o{seed}-{q:09d}" for q in rows["seq"].tolist()], dtype=object),
            "event_ts_ms": rows["ts"].astype(np.int64),
            "quantity": rows["qty"].astype(np.int64),
            "unit_price_cents": tables["unit_price_cents"][sku],
            "emit_ns": emits,
            "line": rows["line"].astype(np.int64),
        }
        coded = [
            (sku, [(name, tables[name]) for name in ("sku", "merchant", "country", "category")]),
            (rows["typ"].astype(np.int64), [("type", tables["type"])]),
            (prov, [("province", tables["province"])]),
            (chan, [("channel", tables["channel"])]),
            (pay, [("payment", tables["payment"])]),
        ]
        return plain, coded

    def _scenario_emit_ns(self, rows: npt.NDArray[np.void]) -> npt.NDArray[np.int64]:
        """Emission time on the scenario clock, epoch ns (deterministic)."""
        scenario_ms = rows["e"] * self.scenario.scale.compression * 1000.0
        return (self.start_ms + np.floor(scenario_ms).astype(np.int64)) * 1_000_000

    def _objects(self, rows: npt.NDArray[np.void], emit_ns: int | None) -> list[OrderEvent]:
        skus = self.catalog.skus
        n_chan, n_pay = self._n_chan, self._n_pay
        seed = self.scenario.seed
        emits = self._scenario_emit_ns(rows).tolist() if emit_ns is None else [emit_ns] * len(rows)
        out = []
        for row, em in zip(rows.tolist(), emits, strict=True):
            _, seq, line, typ, _, sku_i, qty, buyer, ts = row
            s = skus[sku_i]
            prov, rest = divmod(buyer, n_chan * n_pay)
            chan, pay = divmod(rest, n_pay)
            out.append(
                OrderEvent(
                    order_id=f"o{seed}-{seq:09d}",
                    type=EVENT_TYPES[typ],
                    event_ts_ms=ts,
                    sku=s.sku,
                    merchant=s.merchant,
                    country=s.country,
                    category=s.category,
                    quantity=qty,
                    unit_price_cents=s.unit_price_cents,
                    province=self._provinces[prov],
                    channel=self._channels[chan],
                    payment=self._payments[pay],
                    emit_ns=em,
                    line=line,
                )
            )
        return out


# ASCII digits of 0000..9999: numbers are written four digits per table lookup.
_QUADS: Final = np.frombuffer(
    "".join(f"{i:04d}" for i in range(10_000)).encode(), dtype=np.uint8
).reshape(10_000, 4)


def _digits(values: npt.NDArray[np.generic], k: int) -> npt.NDArray[np.uint8]:
    """ASCII digits of non-negative integers below 10**k, zero-padded to k columns."""
    x = values.astype(np.int64)
    groups = -(-k // 4)
    out = np.empty((len(x), groups * 4), dtype=np.uint8)
    for g in range(groups - 1, -1, -1):
        out[:, g * 4 : g * 4 + 4] = _QUADS[x % 10_000]
        x = x // 10_000
    return out[:, groups * 4 - k :]


def _positions(first: int, n: int) -> npt.NDArray[np.int64]:
    return np.arange(first, first + n, dtype=np.int64)


def _cells(rows: npt.NDArray[np.void]) -> npt.NDArray[np.int64]:
    """The grid cell each event is due in."""
    return np.floor(rows["e"] / GRID_S).astype(np.int64)


def _file_fine(
    fine: dict[int, list[npt.NDArray[np.void]]],
    rows: npt.NDArray[np.void],
    min_cell: int,
    cells: npt.NDArray[np.int64] | None = None,
) -> None:
    """Append `rows` to the per-cell lists of `fine` (never to a cell already emitted)."""
    cells = np.maximum(_cells(rows) if cells is None else cells, min_cell)
    _append_grouped(fine, rows, cells)


def _append_grouped(
    lists: dict[int, list[npt.NDArray[np.void]]],
    rows: npt.NDArray[np.void],
    groups: npt.NDArray[np.int64],
) -> None:
    """Append the rows of each group (stable order inside it) to `lists[group]`."""
    order = np.argsort(groups, kind="stable")
    groups = groups[order]
    rows = rows[order]
    cuts = np.flatnonzero(np.diff(groups)) + 1
    for part, g in zip(np.split(rows, cuts), groups[np.r_[0, cuts]].tolist(), strict=True):
        lists.setdefault(g, []).append(part)


def _first_after(
    keys: tuple[npt.NDArray[np.generic], ...], until: tuple[float, int, int, int, int]
) -> int:
    """Index of the first row (rows sorted by `keys`) whose key is greater than `until`."""
    e = keys[0]
    # Rows strictly before/after `until` in the first key, then compare the few ties exactly.
    lo = int(np.searchsorted(e, until[0], side="left"))
    hi = int(np.searchsorted(e, until[0], side="right"))
    for i in range(lo, hi):
        row = tuple(k[i].item() for k in keys)
        if row > until:
            return i
    return hi


def _cum(pairs: tuple[tuple[str, float], ...]) -> npt.NDArray[np.float64]:
    """Normalised cumulative weights for `searchsorted` sampling (last entry exactly 1)."""
    weights = np.array([w for _, w in pairs], dtype=np.float64)
    cum = np.cumsum(weights) / weights.sum()
    cum[-1] = 1.0
    return cum[:-1]  # searchsorted(side="right") on the first n-1 bounds gives 0..n-1


def _js(text: str) -> str:
    """`text` as a JSON string literal."""
    return orjson.dumps(text).decode()
