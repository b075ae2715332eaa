// Draw the models page's score plots from the figures the page carries as JSON (json_script):
// one chart per kind of figure, one line per model kind and metric, one point per version.
(function () {
  "use strict";
  var target = document.getElementById("score-charts");
  var source = target && document.getElementById(target.dataset.source);
  if (!source) return;
  var panels = JSON.parse(source.textContent);
  target.replaceChildren.apply(target, panels.map(function (panel) {
    return TrainingCharts.chart({
      title: panel.title, unit: panel.unit, xLabel: "round", series: panel.series, dots: true,
      yInclude: panel.unit === "%" ? [0, 100] : [],  // shares on their whole scale, comparable at a glance
    });
  }));
})();
