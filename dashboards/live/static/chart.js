// A small line chart on <canvas>, written for this dashboard (no external library, no CDN).
// lineChart(canvas, points, {seconds, marks}) draws points [[secondsAgo (<= 0), value], ...]
// and shades each mark [startAgo, endAgo or null (still on), label]: a fault of the run.
"use strict";

function niceStep(max, ticks) {
  const raw = max / ticks;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (raw <= m * power) return m * power;
  }
  return 10 * power;
}

function formatCount(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + "k";
  return String(Math.round(v));
}

function lineChart(canvas, points, options) {
  const seconds = (options && options.seconds) || 300;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight || Number(canvas.getAttribute("height"));
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 52, right = 12, top = 10, bottom = 24;
  const plotW = width - left - right, plotH = height - top - bottom;
  const maxValue = Math.max(1, ...points.map((p) => p[1]));
  const step = niceStep(maxValue, 4);
  const yMax = Math.ceil(maxValue / step) * step;
  const x = (ago) => left + plotW * (1 + ago / seconds);
  const y = (v) => top + plotH * (1 - v / yMax);

  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#8a93a8";
  ctx.strokeStyle = "#232b40";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    ctx.beginPath();
    ctx.moveTo(left, y(v));
    ctx.lineTo(width - right, y(v));
    ctx.stroke();
    ctx.fillText(formatCount(v), left - 8, y(v));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let ago = -seconds; ago <= 0; ago += 60) {
    ctx.fillText(ago === 0 ? "now" : ago / 60 + " min", x(ago), height - bottom + 6);
  }
  for (const [start, end, label] of (options && options.marks) || []) {
    const from = x(Math.max(start, -seconds));
    const to = x(end === null ? 0 : Math.max(end, -seconds));
    if (to < left) continue;
    ctx.fillStyle = "rgba(255, 200, 60, 0.18)";
    ctx.fillRect(from, top, Math.max(to - from, 2), plotH);
    ctx.fillStyle = "#ffc83c";
    // The label right of the band's start, or left of it where the plot ends first.
    const fits = from + 4 + ctx.measureText(label).width <= width - right;
    ctx.textAlign = fits ? "left" : "right";
    ctx.fillText(label, fits ? from + 4 : from - 4, top + 2);
  }
  const shown = points.filter((p) => p[0] >= -seconds);
  if (shown.length < 2) return;
  ctx.beginPath();
  shown.forEach((p, i) => (i ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
  ctx.strokeStyle = "#ff5a36";
  ctx.lineWidth = 2;
  ctx.stroke();
  ctx.lineTo(x(shown[shown.length - 1][0]), y(0));
  ctx.lineTo(x(shown[0][0]), y(0));
  ctx.closePath();
  ctx.fillStyle = "rgba(255, 90, 54, 0.15)";
  ctx.fill();
}
