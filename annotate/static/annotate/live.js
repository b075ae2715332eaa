// While a job a page shows is waiting for a worker or running, fetch the page again every `data-live`
// milliseconds and swap in each region marked `data-live` (by its id), so its progress moves and its end shows
// without a reload. Forms outside those regions are left alone: what the admin is typing stays. Stops once no
// region says `data-waiting`. Used by the Import, Export and Screen pages.
(function () {
  "use strict";
  var RETRY_MS = 10000;

  function regions() { return Array.prototype.slice.call(document.querySelectorAll("[data-live][id]")); }
  function waiting() { return regions().some(function (region) { return Boolean(region.dataset.waiting); }); }
  function every() {
    var found = regions().map(function (region) { return Number(region.dataset.live) || 3000; });
    return Math.min.apply(null, found.length ? found : [3000]);
  }

  function poll() {
    fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (text === null) { window.setTimeout(poll, RETRY_MS); return; }
        var fresh = new DOMParser().parseFromString(text, "text/html");
        regions().forEach(function (now) {
          var next = fresh.getElementById(now.id);
          if (next) now.replaceWith(document.adoptNode(next));
        });
        if (waiting()) window.setTimeout(poll, every());
      })
      .catch(function () { window.setTimeout(poll, RETRY_MS); });
  }

  if (waiting()) window.setTimeout(poll, every());
})();
