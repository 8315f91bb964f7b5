// Draws every <canvas data-chart="..."> with the vendored Chart.js (vendor/chart-*.umd.js, loaded
// before this file). The spec is built by the server (services/usage_charts.py): this file only
// parses it, so the page needs no inline script (CSP: script-src 'self').
"use strict";

function drawCharts() {
  if (typeof Chart === "undefined") {
    console.error("charts: Chart.js did not load");
    return;
  }
  for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
    try {
      new Chart(canvas, JSON.parse(canvas.dataset.chart));
      canvas.dataset.drawn = "true";
    } catch (err) {
      console.error(`charts: ${canvas.id}: ${err}`);
    }
  }
}

drawCharts();
