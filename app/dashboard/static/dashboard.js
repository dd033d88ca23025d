// Racetrack dashboard: submits the view form on change, draws the chart, marks the page ready.
(function () {
  "use strict";
  var form = document.getElementById("view");
  var custom = document.getElementById("custom");
  if (form) {
    form.addEventListener("change", function (event) {
      var target = event.target;
      if (target.name === "period") {
        custom.hidden = target.value !== "custom";
        if (target.value === "custom") { form.elements.first.focus(); return; }
      }
      if (target.name === "breakdown") { form.elements.segment.value = ""; }
      if ((target.name === "first" || target.name === "last") && !(form.elements.first.value && form.elements.last.value)) return;
      form.requestSubmit();
    });
    form.addEventListener("submit", function () {
      if (form.elements.period.value !== "custom") { form.elements.first.disabled = true; form.elements.last.disabled = true; }
      if (!form.elements.segment.value) form.elements.segment.disabled = true;
    });
  }

  function ready() {
    document.documentElement.setAttribute("data-ready", "1");
    if (window.performance && performance.mark) performance.mark("racetrack:ready");
  }

  var holder = document.getElementById("chart");
  var source = document.getElementById("chart-data");
  if (!holder || !source || !window.uPlot) { ready(); return; }
  var chart = JSON.parse(source.textContent);
  var css = getComputedStyle(document.documentElement);
  function size() { return { width: Math.max(260, holder.clientWidth), height: 260 }; }
  function dated(labels) { return function (u, i) { return labels[i] || ""; }; }
  var opts = Object.assign(size(), {
    series: [
      { value: dated(chart.labels) },
      { label: "This period", stroke: css.getPropertyValue("--reach").trim() || "#2f6fd6", width: 2, points: { show: chart.x.length < 40 } },
      { label: "Previous period", stroke: "#8a94a3", dash: [6, 4], width: 1.5, points: { show: false } }
    ],
    axes: [{}, { size: 60 }],
    scales: { x: { time: true, range: function (u, min, max) { return min === max ? [min - 43200, max + 43200] : [min, max]; } } },
    legend: { live: true }
  });
  var plot = new uPlot(opts, [chart.x, chart.values, chart.before], holder);
  var pending = 0;
  window.addEventListener("resize", function () {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(function () { plot.setSize(size()); });
  });
  requestAnimationFrame(ready);
})();
