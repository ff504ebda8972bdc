// The live page: one snapshot per second over Server-Sent Events from /events. Every time
// it shows is in the scenario's time zone (the snapshot's `zone`), labelled; the charts are
// in charts.js.
"use strict";

const euro = new Intl.NumberFormat("en-IE", { style: "currency", currency: "EUR" });
const count = new Intl.NumberFormat("en-IE", { maximumFractionDigits: 0 });
const $ = (id) => document.getElementById(id);

// The GMV counter glides from the shown value to the newest one over about a second.
const gmv = { shown: 0, from: 0, target: 0, since: 0 };
function tick(now) {
  const t = Math.min((now - gmv.since) / 900, 1);
  gmv.shown = gmv.from + (gmv.target - gmv.from) * t;
  $("gmv").textContent = euro.format(gmv.shown / 100);
  $("gmv").dataset.cents = String(Math.round(gmv.shown));
  requestAnimationFrame(tick);
}
requestAnimationFrame(tick);

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// An instant (epoch ms) on the scenario's wall clock: {date: "11 Nov 2020", time: "00:00:26"}.
// Computed from the zone's offset, never from the browser's own time zone.
function zoned(epochMs, zone) {
  const d = new Date(epochMs + zone.offset_s * 1000);
  return {
    date: `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}`,
    time: d.toISOString().slice(11, 19),
  };
}

// The scenario clock: its date and time when the scenario's start is known, else the time
// since its 00:00.
function clock(s) {
  if (s.scenario_s === null || s.scenario_s === undefined) return "—";
  if (s.scenario_start_ms !== null && s.scenario_start_ms !== undefined) {
    const at = zoned(s.scenario_start_ms + Math.floor(s.scenario_s) * 1000, s.zone);
    return `${at.date}, ${at.time}`;
  }
  return "00:00 + " + new Date(Math.floor(s.scenario_s) * 1000).toISOString().slice(11, 19);
}

function ordinal(n) {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : ["th", "st", "nd", "rd"][n % 10] || "th";
  return n + suffix;
}

// A sell-out's note: how long the SKU's stock lasted, or which repeat this is (units came
// back, from cancellations or a restock, and sold out again).
function sellOutNote(r) {
  if (r.nth > 1) return `again (${ordinal(r.nth)} time)`;
  return r.time_to_sell_out_s === null ? "" : "after " + r.time_to_sell_out_s.toFixed(1) + " s";
}

function bars(element, rows) {
  const max = Math.max(1, ...rows.map((r) => r[1]));
  element.replaceChildren(
    ...rows.map(([name, cents]) => {
      const row = document.createElement("div");
      row.className = "row";
      const label = document.createElement("span");
      label.textContent = name;
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fillbar";
      fill.style.width = ((100 * cents) / max).toFixed(1) + "%";
      track.append(fill);
      const amount = document.createElement("span");
      amount.className = "amount";
      amount.textContent = euro.format(cents / 100);
      row.append(label, track, amount);
      return row;
    })
  );
}

// Table rows of text cells (the first left, the others right); `classes[i]` on the i-th row.
function rows(element, items, classes) {
  element.replaceChildren(
    ...items.map((cells, row) => {
      const tr = document.createElement("tr");
      if (classes && classes[row]) tr.className = classes[row];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i > 0) td.className = "num";
        tr.append(td);
      });
      return tr;
    })
  );
}

const charts = runCharts({
  events: $("chart-events"),
  lag: $("chart-lag"),
  p99: $("chart-p99"),
});
// For scripts and the browser test: the uPlot instances and the snapshot shown.
window.flashsaleCharts = charts.charts;
window.flashsaleSnapshot = null;

function render(s) {
  if (!s.ready) {
    $("status").textContent = s.error ? "waiting: " + s.error : "waiting for the workers…";
    $("status").className = "status down";
    return;
  }
  window.flashsaleSnapshot = s;
  $("status").textContent = "live · run " + runTime(s.run_s);
  $("status").className = "status live";
  if (s.gmv_cents !== gmv.target) {
    gmv.from = gmv.shown;
    gmv.target = s.gmv_cents;
    gmv.since = performance.now();
  }
  $("gmv").dataset.target = String(s.gmv_cents);
  $("rate").textContent = count.format(s.rate_per_s);
  $("p50").textContent = millis(s.latency_p50_ms);
  $("p99").textContent = millis(s.latency_p99_ms);
  $("lag").textContent = s.lag === null ? "—" : count.format(s.lag);
  $("dlq").textContent = count.format(s.dlq);
  $("late").textContent = count.format(s.late);
  $("conversion").textContent =
    s.paid_to_created === null ? "—" : (100 * s.paid_to_created).toFixed(1) + "%";
  $("workers").textContent = `${s.workers_up}/${s.workers}`;
  $("clock").textContent = clock(s);
  // The zone beside the clock only when the clock shows a time of day.
  $("clock-zone").textContent =
    s.scenario_s === null || s.scenario_start_ms === null ? "" : s.zone.label;
  $("sold-out-zone").textContent = s.zone.label;
  $("progress").style.width = s.progress === null ? "0" : (100 * s.progress).toFixed(1) + "%";
  bars($("by-country"), s.by_country);
  bars($("by-category"), s.by_category);
  $("minute").textContent = s.top_window_start_ms
    ? "minute of " + zoned(s.top_window_start_ms, s.zone).time.slice(0, 5) + " " + s.zone.label
    : "";
  rows($("top"), s.top_skus.map((r) => [r.sku, count.format(r.units)]));
  rows(
    $("sold-out"),
    s.sold_out.map((r) => [r.sku, zoned(r.event_ts_ms, s.zone).time, sellOutNote(r)]),
    s.sold_out.map((r) => (r.nth > 1 ? "again" : ""))
  );
  const marks = s.faults || [];
  charts.update(s.series, marks);
  $("faults").textContent = marks.length
    ? "faults: " +
      marks
        .map((m) => m[2] + (m[1] === null ? " (on)" : " (" + (m[1] - m[0]).toFixed(1) + " s)"))
        .join(" · ")
    : "";
}

const stream = new EventSource("/events");
stream.onmessage = (event) => render(JSON.parse(event.data));
stream.onerror = () => {
  $("status").textContent = "reconnecting…";
  $("status").className = "status down";
};
// The dashboard says when the run is over: keep the final numbers, stop reconnecting.
stream.addEventListener("end", () => {
  stream.close();
  $("status").textContent = "run ended · final numbers";
  $("status").className = "status";
});
