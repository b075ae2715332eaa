// Follow a training round live: poll its API every few seconds for the status of the round and its
// stages, fetch only the metric points written since the last poll, and draw the curves here as SVG
// (TrainingCharts, charts.js). The server only reads rows; drawing every curve on it took seconds per
// request. When the round ends the page reloads once, so its buttons match its new state.
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root) return;
  var POLL_MS = 3000, RETRY_MS = 5000;
  // The metrics shown first, in this order; any other reported metric follows under "More metrics".
  var PREFERRED = ["loss", "eval_loss", "reward_accuracy", "mean_reward", "kl", "learning_rate"];
  var FINISHED = ["succeeded", "failed", "cancelled"];
  var curves = document.getElementById("curves");
  var more = document.getElementById("more-curves");
  var after = 0, labels = {}, series = {};  // series: {metric: {stage: [[step, value], ...]}}

  function setText(element, text) { if (element) element.textContent = text; }
  function capitalised(text) { return text.charAt(0).toUpperCase() + text.slice(1); }

  function setStatus(element, status, text) {
    if (!element) return;
    element.className = "status status-" + status;
    element.textContent = text;
  }

  function heartbeatText(run) {
    if (!run.worker) return FINISHED.indexOf(run.status) >= 0 ? "No worker ran this round." : "No worker has picked this round up yet.";
    var at = run.heartbeat_at ? new Date(run.heartbeat_at).toLocaleTimeString([], { hour12: false }) : "–";
    return "Last heartbeat from " + run.worker + " at " + at + ".";
  }

  function render(run) {
    setStatus(document.querySelector('[data-field="run-status"]'), run.status, capitalised(run.status));
    run.stages.forEach(function (stage) {
      var row = root.querySelector('tr[data-stage="' + stage.name + '"]');
      if (!row) return;
      setStatus(row.querySelector('[data-field="status"] .status'), stage.status, stage.status);
      var bar = row.querySelector("progress");
      if (bar) { bar.max = stage.total || 1; bar.value = stage.step; }
      var progress = row.querySelector('[data-field="progress"]');
      if (progress && progress.lastChild) progress.lastChild.textContent = " " + stage.step + " / " + (stage.total || "?");
      setText(row.querySelector('[data-field="eta"]'), stage.eta_seconds ? Math.round(stage.eta_seconds) + " s" : "–");
      setText(row.querySelector('[data-field="metrics"]'), Object.keys(stage.metrics).map(function (name) {
        var value = stage.metrics[name];
        return (labels[name] || name) + " " + TrainingCharts.format(value);
      }).join(" · "));
      setText(row.querySelector('[data-field="model"]'), stage.model_version ? stage.model_version.name : "–");
    });
    setText(root.querySelector('[data-field="heartbeat"]'), heartbeatText(run));
    var cancelling = root.querySelector('[data-field="cancelling"]');
    if (cancelling) cancelling.hidden = !(run.cancel_requested && FINISHED.indexOf(run.status) < 0);
  }

  function draw() {
    var names = Object.keys(series);
    var first = PREFERRED.filter(function (name) { return names.indexOf(name) >= 0; });
    var rest = names.filter(function (name) { return PREFERRED.indexOf(name) < 0; }).sort();
    function panels(target, chosen) {
      if (!target) return;
      var figures = chosen.map(function (name) {
        var figure = TrainingCharts.chart({
          title: labels[name] || name, xLabel: "step",
          series: Object.keys(series[name]).map(function (stage) { return { name: stage, points: series[name][stage] }; }),
        });
        figure.dataset.metric = name;
        return figure;
      });
      target.replaceChildren.apply(target, figures);
    }
    panels(curves, first);
    panels(more ? more.querySelector(".charts") : null, rest);
    if (more) more.hidden = !rest.length;
    setText(document.getElementById("no-curves"), names.length ? "" : "No metrics reported yet.");
  }

  // Fetch the points written since the last call (several calls for a long round's first load), then draw.
  function loadPoints() {
    return fetch(root.dataset.points + "?after=" + after, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (page) {
        if (!page) return;
        Object.assign(labels, page.labels);
        page.points.forEach(function (point) {
          Object.keys(point.values).forEach(function (name) {
            if (typeof point.values[name] !== "number" || !isFinite(point.values[name])) return;
            var byStage = series[name] || (series[name] = {});
            (byStage[point.stage] || (byStage[point.stage] = [])).push([point.step, point.values[name]]);
          });
        });
        after = page.last;
        if (page.more) return loadPoints();
        if (page.points.length || !after) draw();
      });
  }

  function poll() {
    fetch(root.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (run) {
        if (!run) { window.setTimeout(poll, RETRY_MS); return; }
        render(run);
        return loadPoints().then(function () {
          if (FINISHED.indexOf(run.status) >= 0) { window.location.reload(); return; }
          window.setTimeout(poll, POLL_MS);
        });
      })
      .catch(function () { window.setTimeout(poll, RETRY_MS); });
  }

  // Cancelling takes a round seconds to stop: say so the moment the button is pressed.
  var cancel = root.querySelector("form.cancel");
  if (cancel) {
    cancel.addEventListener("submit", function () {
      var button = cancel.querySelector("button");
      setText(button, "Cancelling…");
      button.disabled = true;
      var cancelling = root.querySelector('[data-field="cancelling"]');
      if (cancelling) cancelling.hidden = false;
    });
  }

  if (root.dataset.finished === "1") loadPoints();
  else loadPoints().then(function () { window.setTimeout(poll, POLL_MS); }, function () { window.setTimeout(poll, RETRY_MS); });
})();
