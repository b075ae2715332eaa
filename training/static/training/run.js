// Follow a training round live: poll its API every few seconds, update the stage table and the
// curves (rendered by the server from the metrics), and reload once when the round ends so the
// buttons match its new state.
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root || root.dataset.finished === "1") return;
  var curves = document.getElementById("curves");

  function setText(element, text) { if (element) element.textContent = text; }

  function render(run) {
    run.stages.forEach(function (stage) {
      var row = root.querySelector('tr[data-stage="' + stage.name + '"]');
      if (!row) return;
      setText(row.querySelector('[data-field="status"] .status'), stage.status);
      var bar = row.querySelector("progress");
      if (bar) { bar.max = stage.total || 1; bar.value = stage.step; }
      var progress = row.querySelector('[data-field="progress"]');
      if (progress && progress.lastChild) progress.lastChild.textContent = " " + stage.step + " / " + (stage.total || "?");
      setText(row.querySelector('[data-field="eta"]'), stage.eta_seconds ? Math.round(stage.eta_seconds) + " s" : "–");
      setText(row.querySelector('[data-field="metrics"]'), Object.keys(stage.metrics).map(function (name) {
        var value = stage.metrics[name];
        return name + " " + (typeof value === "number" ? Number(value.toPrecision(4)) : value);
      }).join(" · "));
      setText(row.querySelector('[data-field="model"]'), stage.model_version ? stage.model_version.name : "–");
    });
    if (run.heartbeat_at) setText(root.querySelector('[data-field="heartbeat"]'), new Date(run.heartbeat_at).toLocaleTimeString());
  }

  function poll() {
    fetch(root.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (run) {
        if (!run) return;
        render(run);
        if (curves) curves.src = root.dataset.curves + "?at=" + Date.now();
        if (["succeeded", "failed", "cancelled"].indexOf(run.status) >= 0) { window.location.reload(); return; }
        window.setTimeout(poll, 3000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 3000);
})();
