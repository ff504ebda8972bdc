// The live page: one snapshot per second over Server-Sent Events from /events.
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

function ms(v) {
  if (v === null || v === undefined) return "—";
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(0) + " ms";
}

function clock(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.floor(seconds);
  const hh = String(Math.floor(s / 3600)).padStart(2, "0");
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return `00:00 + ${hh}:${mm}:${ss}`;
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

function rows(element, items) {
  element.replaceChildren(
    ...items.map((cells) => {
      const tr = document.createElement("tr");
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

let history = [];
let marks = [];
function render(s) {
  if (!s.ready) {
    $("status").textContent = s.error ? "waiting: " + s.error : "waiting for the workers…";
    $("status").className = "status down";
    return;
  }
  $("status").textContent = "live · updated " + new Date(s.t * 1000).toLocaleTimeString();
  $("status").className = "status live";
  if (s.gmv_cents !== gmv.target) {
    gmv.from = gmv.shown;
    gmv.target = s.gmv_cents;
    gmv.since = performance.now();
  }
  $("gmv").dataset.target = String(s.gmv_cents);
  $("rate").textContent = count.format(s.rate_per_s);
  $("p50").textContent = ms(s.latency_p50_ms);
  $("p99").textContent = ms(s.latency_p99_ms);
  $("lag").textContent = s.lag === null ? "—" : count.format(s.lag);
  $("dlq").textContent = count.format(s.dlq);
  $("late").textContent = count.format(s.late);
  $("conversion").textContent =
    s.paid_to_created === null ? "—" : (100 * s.paid_to_created).toFixed(1) + "%";
  $("workers").textContent = `${s.workers_up}/${s.workers}`;
  $("clock").textContent = clock(s.scenario_s);
  $("progress").style.width = s.progress === null ? "0" : (100 * s.progress).toFixed(1) + "%";
  bars($("by-country"), s.by_country);
  bars($("by-category"), s.by_category);
  $("minute").textContent = s.top_window_start_ms
    ? "minute of " + new Date(s.top_window_start_ms).toISOString().slice(11, 16) + " UTC"
    : "";
  rows($("top"), s.top_skus.map((r) => [r.sku, count.format(r.units)]));
  rows(
    $("sold-out"),
    s.sold_out.map((r) => [
      r.sku,
      r.time_to_sell_out_s === null ? "—" : r.time_to_sell_out_s.toFixed(1) + " s",
    ])
  );
  history = s.history;
  marks = s.faults || [];
  lineChart($("chart"), history, { seconds: 300, marks: marks });
  $("faults").textContent = marks.length
    ? "faults: " +
      marks
        .map((m) => m[2] + (m[1] === null ? " (on)" : " (" + (m[1] - m[0]).toFixed(1) + " s)"))
        .join(" · ")
    : "";
}

window.addEventListener("resize", () => lineChart($("chart"), history, { seconds: 300, marks: marks }));

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
