// moodring's dashboard chart: the mood (left axis) against BTC (right axis) with uPlot,
// the extreme bands shaded and this community's alerts as vertical lines.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  var box = document.getElementById("chart");
  var times = {};
  data.mood.forEach(function (p) { times[p[0]] = true; });
  data.price.forEach(function (p) { times[p[0]] = true; });
  var xs = Object.keys(times).map(Number).sort(function (a, b) { return a - b; });
  function column(series) {
    var at = {};
    series.forEach(function (p) { at[p[0]] = p[1]; });
    return xs.map(function (x) { return x in at ? at[x] : null; });
  }
  function decorate(u) {
    var ctx = u.ctx, left = u.bbox.left, width = u.bbox.width;
    function band(from, to, colour) {
      var top = u.valToPos(to, "mood", true), bottom = u.valToPos(from, "mood", true);
      ctx.fillStyle = colour;
      ctx.fillRect(left, top, width, bottom - top);
    }
    band(0, data.fear_at, "rgba(214, 69, 65, 0.10)");
    band(data.greed_at, 100, "rgba(46, 160, 67, 0.10)");
    ctx.strokeStyle = "rgba(120, 60, 200, 0.8)";
    ctx.lineWidth = 2;
    data.alerts.forEach(function (a) {
      var x = u.valToPos(a.t, "x", true);
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
    });
  }
  var opts = {
    width: Math.max(box.clientWidth, 280),
    height: 320,
    scales: { x: { time: true }, mood: { range: [0, 100] }, usd: {} },
    axes: [{}, { scale: "mood", label: "mood" }, { scale: "usd", side: 1, label: "BTC (USD)",
      grid: { show: false } }],
    series: [{}, { label: "mood", scale: "mood", stroke: "#2b6cb0", width: 2, spanGaps: true,
      points: { show: true } },
      { label: "BTC", scale: "usd", stroke: "#d69e2e", width: 1.5, spanGaps: true, points: { show: true } }],
    hooks: { drawClear: [decorate] }
  };
  var plot = new uPlot(opts, [xs, column(data.mood), column(data.price)], box);
  window.moodringChart = plot;  // for the browser test: what the chart was given
  window.addEventListener("resize", function () {
    plot.setSize({ width: Math.max(box.clientWidth, 280), height: 320 });
  });
})();
