// While an export waits for a worker or is being written, fetch this page again every few seconds
// and swap in its queue and its snapshots, so a finished export shows up without a reload. The
// form is left alone: what the admin is typing stays. Stops once nothing is waiting.
(function () {
  "use strict";
  var POLL_MS = 3000, RETRY_MS = 10000;
  var REPLACED = ["export-queue", "snapshots"];

  function waiting() {
    var queue = document.getElementById("export-queue");
    return Boolean(queue && queue.dataset.waiting);
  }

  function poll() {
    fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (text === null) { window.setTimeout(poll, RETRY_MS); return; }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        REPLACED.forEach(function (id) {
          var now = document.getElementById(id), next = fresh.getElementById(id);
          if (now && next) now.replaceWith(document.adoptNode(next));
        });
        if (waiting()) window.setTimeout(poll, POLL_MS);
      })
      .catch(function () { window.setTimeout(poll, RETRY_MS); });
  }

  if (waiting()) window.setTimeout(poll, POLL_MS);
})();
