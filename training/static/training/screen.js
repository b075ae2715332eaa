// While a backfill waits for a worker or is screening, fetch this page again every few seconds and swap in
// its list of backfills, so its progress shows without a reload. The settings form is left alone: what the
// admin is changing stays. Stops once no backfill is waiting or running.
(function () {
  "use strict";
  var POLL_MS = 3000, RETRY_MS = 10000, ID = "screen-jobs";

  function waiting() {
    var jobs = document.getElementById(ID);
    return Boolean(jobs && jobs.dataset.waiting);
  }

  function poll() {
    fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (text === null) { window.setTimeout(poll, RETRY_MS); return; }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var now = document.getElementById(ID), next = fresh.getElementById(ID);
        if (now && next) now.replaceWith(document.adoptNode(next));
        if (waiting()) window.setTimeout(poll, POLL_MS);
      })
      .catch(function () { window.setTimeout(poll, RETRY_MS); });
  }

  if (waiting()) window.setTimeout(poll, POLL_MS);
})();
