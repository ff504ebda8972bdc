// The run's charts, drawn by uPlot (static/vendor/, MIT): events produced and applied per
// second, consumer lag and p99 latency. Their x axis is the run's time, in seconds since the
// dashboard first reached a worker: it starts at the run's start and grows with it. Hovering
// one chart shows the values of all three at that second in their legends (the cursors are
// synced); each fault of the run is shaded on every chart and named on the first.
// runCharts(elements) -> {update(series, faults), charts}; series and faults as /snapshot has
// them: {t: [...], produced_per_s: [...], applied_per_s, lag, p99_ms}, [[start, end|null, label]].
"use strict";

// A run's first seconds still get an axis of some width.
const RUN_AXIS_MIN_S = 10;
// Steps of the run-time axis: whole seconds and minutes.
const RUN_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];
const GRID = { stroke: "#232b40", width: 1 };
const TEXT = "#8a93a8";

// 75 -> "1:15", 3725 -> "1:02:05".
function runTime(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const t = Math.max(0, Math.round(seconds));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const mmss = String(m).padStart(h ? 2 : 1, "0") + ":" + String(t % 60).padStart(2, "0");
  return h ? h + ":" + mmss : mmss;
}

function compact(v) {
  if (v === null || v === undefined) return "—";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
  if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return String(Math.round(v));
}

function millis(v) {
  if (v === null || v === undefined) return "—";
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(0) + " ms";
}

// Shades each fault [start, end or null (still on), label] over the plot; names it when asked.
function faultBands(getFaults, named) {
  return (u) => {
    const { left, top, width, height } = u.bbox;
    const ctx = u.ctx;
    ctx.save();
    ctx.font = Math.round(12 * uPlot.pxRatio) + "px system-ui, sans-serif";
    ctx.textBaseline = "top";
    for (const [start, end, label] of getFaults()) {
      const from = Math.max(u.valToPos(Math.max(start, 0), "x", true), left);
      const to = Math.min(u.valToPos(end === null ? u.scales.x.max : end, "x", true), left + width);
      if (to < left) continue;
      ctx.fillStyle = "rgba(255, 200, 60, 0.18)";
      ctx.fillRect(from, top, Math.max(to - from, 2 * uPlot.pxRatio), height);
      if (!named) continue;
      ctx.fillStyle = "#ffc83c";
      // The label right of the band's start, or left of it where the plot ends first.
      const pad = 4 * uPlot.pxRatio;
      const fits = from + pad + ctx.measureText(label).width <= left + width;
      ctx.textAlign = fits ? "left" : "right";
      ctx.fillText(label, fits ? from + pad : from - pad, top + pad);
    }
    ctx.restore();
  };
}

function chart(element, lines, format, getFaults, named) {
  const opts = {
    width: Math.max(element.clientWidth, 200),
    height: 170,
    cursor: { sync: { key: "run" } },
    legend: { live: true },
    scales: {
      x: { time: false, range: (u, min, max) => [0, Math.max(max || 0, RUN_AXIS_MIN_S)] },
      y: { range: (u, min, max) => uPlot.rangeNum(0, Math.max(max || 0, 1), 0.1, true) },
    },
    series: [
      { label: "run time", value: (u, v) => runTime(v) },
      ...lines.map(([label, color, fill]) => ({
        label,
        stroke: color,
        width: 2,
        fill,
        points: { show: false },
        value: (u, v) => format(v),
      })),
    ],
    axes: [
      {
        stroke: TEXT,
        grid: GRID,
        ticks: GRID,
        incrs: RUN_STEPS,
        space: 60,
        values: (u, splits) => splits.map(runTime),
      },
      { stroke: TEXT, grid: GRID, ticks: GRID, size: 64, values: (u, splits) => splits.map(format) },
    ],
    hooks: { draw: [faultBands(getFaults, named)] },
  };
  return new uPlot(opts, [[], ...lines.map(() => [])], element);
}

function runCharts(elements) {
  let faults = [];
  const getFaults = () => faults;
  const charts = {
    events: chart(
      elements.events,
      [
        ["produced/s", "#7aa2ff", null],
        ["applied/s", "#ff5a36", "rgba(255, 90, 54, 0.12)"],
      ],
      compact,
      getFaults,
      true
    ),
    lag: chart(elements.lag, [["lag", "#3ecf8e", "rgba(62, 207, 142, 0.12)"]], compact, getFaults, false),
    p99: chart(elements.p99, [["p99", "#ffc83c", null]], millis, getFaults, false),
  };
  window.addEventListener("resize", () => {
    for (const [name, u] of Object.entries(charts)) {
      u.setSize({ width: Math.max(elements[name].clientWidth, 200), height: u.height });
    }
  });
  return {
    charts,
    update(series, newFaults) {
      faults = newFaults || [];
      charts.events.setData([series.t, series.produced_per_s, series.applied_per_s]);
      charts.lag.setData([series.t, series.lag]);
      charts.p99.setData([series.t, series.p99_ms]);
    },
  };
}
