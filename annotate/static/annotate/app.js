// Keyboard shortcuts, the shortcut help and drafts for task pages. Our own, no dependencies.
//
// The task form (#task-form) posts as a plain form; this file only makes it faster to use:
// - `?` shows the help, `S` asks why and skips (1-5 a reason, Enter or S again), Enter submits (Ctrl+Enter inside a text box), Esc leaves a
//   text box; any input with data-keys="a 1" is clicked by those keys.
// - Every change is saved as a draft in localStorage, keyed by task, and put back after a
//   reload or a lost connection. A draft is deleted only when the server has confirmed the
//   submit (it lists such tasks in <body data-drafts-done>).
// - The lease's end in local time, the minutes left, and a warning before it runs out.
// On every page: forms with data-confirm ask first, buttons with data-copy copy an input's text.
(function () {
  "use strict";

  var DRAFT_PREFIX = "draft:task:";
  var DRAFT_DAYS = 7;
  var NOT_SAVED = { csrfmiddlewaretoken: true, submit_key: true };

  function storage() {
    try { return window.localStorage; } catch (error) { return null; }  // blocked by the browser
  }

  function forgetDrafts() {
    var store = storage();
    if (!store) return;
    var done = (document.body.dataset.draftsDone || "").split(",").filter(Boolean);
    done.forEach(function (id) { store.removeItem(DRAFT_PREFIX + id); });
    var oldest = Date.now() - DRAFT_DAYS * 24 * 3600 * 1000;
    for (var i = store.length - 1; i >= 0; i--) {
      var key = store.key(i);
      if (key && key.indexOf(DRAFT_PREFIX) === 0) {
        try {
          if ((JSON.parse(store.getItem(key)).saved || 0) < oldest) store.removeItem(key);
        } catch (error) { store.removeItem(key); }
      }
    }
  }

  function formState(form) {
    var fields = {};
    Array.prototype.forEach.call(form.elements, function (element) {
      if (!element.name || NOT_SAVED[element.name] || element.disabled) return;
      if (element.type === "checkbox" || element.type === "radio") {
        if (!fields[element.name]) fields[element.name] = [];
        if (element.checked) fields[element.name].push(element.value);
      } else if (element.tagName === "TEXTAREA" || element.tagName === "SELECT" || element.type === "text" || element.type === "hidden") {
        fields[element.name] = element.value;
      }
    });
    return fields;
  }

  function restoreState(form, fields) {
    Array.prototype.forEach.call(form.elements, function (element) {
      if (!element.name || NOT_SAVED[element.name] || !(element.name in fields)) return;
      var value = fields[element.name];
      if (element.type === "checkbox" || element.type === "radio") {
        element.checked = Array.isArray(value) && value.indexOf(element.value) !== -1;
      } else if (typeof value === "string") {
        element.value = value;
      }
    });
  }

  function setUpDrafts(form) {
    var store = storage();
    var status = form.querySelector(".draft-state");
    var key = DRAFT_PREFIX + form.dataset.task;
    if (!store) return;
    var saved = store.getItem(key);
    if (saved) {
      try {
        restoreState(form, JSON.parse(saved).fields || {});
        if (status) status.textContent = "Draft restored from this browser.";
      } catch (error) { store.removeItem(key); }
    }
    function save() {
      try {
        store.setItem(key, JSON.stringify({ saved: Date.now(), fields: formState(form) }));
        if (status) status.textContent = "Draft saved in this browser.";
      } catch (error) {
        if (status) status.textContent = "Could not save a draft (browser storage is full or off).";
      }
    }
    form.addEventListener("input", save);
    form.addEventListener("change", save);
    form.addEventListener("draft", save);  // widgets that change hidden inputs say so
  }

  function typing(element) {
    if (!element) return false;
    var tag = element.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT" || element.isContentEditable) return true;
    return tag === "INPUT" && ["text", "email", "password", "number", "search", "url", "datetime-local"].indexOf(element.type) !== -1;
  }

  function submit(form) {
    if (form.classList.contains("sending")) return;
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
  }

  function setUpTaskKeys(form) {
    var help = document.getElementById("help");
    var skip = document.getElementById("skip-form");
    var byKey = {};
    form.querySelectorAll("[data-keys]").forEach(function (input) {
      input.dataset.keys.split(" ").forEach(function (key) { byKey[key.toLowerCase()] = input; });
    });

    document.querySelectorAll("[data-help-open]").forEach(function (button) {
      button.addEventListener("click", function () { help.showModal(); });
    });

    // Skip asks why first (optional): a dialog whose radios and note belong to the skip form. Without
    // script, the Skip button sends the form with no reason.
    var skipDialog = document.getElementById("skip-dialog");
    var skipNote = document.getElementById("skip-note");
    function openSkip() {
      if (!skipDialog) { submit(skip); return; }
      skipDialog.showModal();
      var checked = skipDialog.querySelector("input[name=reason]:checked");
      if (checked) checked.focus();
    }
    function pickReason(radio) {
      radio.checked = true;
      radio.focus();
      skipNote.required = radio.value === "other";  // the browser then asks for the words before it sends
      if (skipNote.required) skipNote.focus();
    }
    if (skipDialog) {
      document.getElementById("skip").addEventListener("click", function (event) {
        event.preventDefault();
        openSkip();
      });
      document.getElementById("skip-cancel").addEventListener("click", function () { skipDialog.close(); });
      skipDialog.querySelectorAll("input[name=reason]").forEach(function (radio) {
        radio.addEventListener("change", function () { pickReason(radio); });
      });
    }

    // Listened for on the document, not the form: a submit event reaches the document only after
    // every listener on the form ran, so a widget's own check (the ranking's "place every reply")
    // has cancelled it by then. Marked as sending before that, the form stayed disabled for good.
    document.addEventListener("submit", function (event) {
      if (event.target !== form || event.defaultPrevented) return;
      // Show that it is on its way; the idempotency key makes a second click harmless anyway.
      form.classList.add("sending");
      setTimeout(function () {
        form.querySelectorAll("button[type=submit]").forEach(function (button) { button.disabled = true; });
      }, 0);
    });
    // Back to a page kept in the browser's cache: it is not sending any more.
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted) return;
      form.classList.remove("sending");
      form.querySelectorAll("button[type=submit]").forEach(function (button) { button.disabled = false; });
    });

    document.addEventListener("keydown", function (event) {
      if (event.defaultPrevented || event.isComposing) return;
      var target = event.target;
      var key = event.key;
      if (help && help.open) {
        if (key === "?") { help.close(); event.preventDefault(); }
        return;  // Esc closes the dialog by itself
      }
      if (skipDialog && skipDialog.open) {
        var reason = target === skipNote ? null : skipDialog.querySelector("[data-skip-key='" + key + "']");
        if (reason) {
          event.preventDefault();
          pickReason(reason);
        } else if (key === "Enter" || ((key === "s" || key === "S") && target !== skipNote)) {
          if (target.closest && target.closest("button")) return;  // Keep working, or Skip it, does its own
          event.preventDefault();
          submit(skip);
        }
        return;  // Esc closes the dialog by itself
      }
      if (key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        submit(form);
        return;
      }
      if (typing(target)) {
        if (key === "Escape") target.blur();
        return;
      }
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (target.closest && target.closest(".flag-menu") && key !== "?") return;  // a reply's own flag form
      if (key === "?") {
        event.preventDefault();
        help.showModal();
      } else if (key === "Enter") {
        // Enter on a focused button or link does what that button or link does.
        if (target.closest && target.closest("button, a, summary")) return;
        event.preventDefault();
        submit(form);
      } else if ((key === "s" || key === "S") && skip) {
        event.preventDefault();
        openSkip();
      } else if (byKey[key.toLowerCase()]) {
        var input = byKey[key.toLowerCase()];
        event.preventDefault();
        input.click();
        if (input.dataset.focus && input.checked) document.getElementById(input.dataset.focus).focus();
      }
    });
  }

  // The lease: its end in the browser's own time zone and the minutes left, counted from what the
  // server said was left when it sent the page; a warning a couple of minutes before it ends.
  var LEASE_WARN_SECONDS = 120;

  function minutes(n) { return n + (n === 1 ? " minute" : " minutes"); }

  function setUpLease(lease) {
    var warning = document.getElementById("lease-warning");
    var left = lease.querySelector(".lease-left");
    var time = lease.querySelector("time");
    var ends = Date.now() + Number(lease.dataset.secondsLeft) * 1000;
    if (time) time.textContent = new Date(ends).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    var shown = "";
    function update() {
      var seconds = Math.max(0, Math.round((ends - Date.now()) / 1000));
      var text = seconds > 0 ? minutes(Math.ceil(seconds / 60)) : "no time";
      if (left && text !== left.textContent) left.textContent = text;
      var say = "";
      if (seconds <= 0) {
        say = "Your time for this task is over: it may go to someone else now. Your draft stays in this browser; submitting still tries.";
      } else if (seconds <= LEASE_WARN_SECONDS) {
        say = "Your time for this task ends in " + minutes(Math.ceil(seconds / 60)) + ". Submit soon, or it goes back to the pool for someone else.";
      }
      if (warning && say !== shown) {
        shown = say;
        warning.textContent = say;
        warning.hidden = !say;
        warning.classList.toggle("over", seconds <= 0);
      }
      // Every 15 s while the warning is far off, then every second, so it comes on time.
      if (seconds > 0) setTimeout(update, seconds - LEASE_WARN_SECONDS > 15 ? 15000 : 1000);
    }
    update();
  }

  // Forms that ask first (Remove member): data-confirm holds the question. The CSP runs no
  // inline script, so this is the only way a button can ask.
  document.addEventListener("submit", function (event) {
    var asking = event.target.closest && event.target.closest("form[data-confirm]");
    if (asking && !window.confirm(asking.dataset.confirm)) event.preventDefault();
  }, true);

  // Copy buttons: data-copy names the input whose text goes to the clipboard.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.getElementById(button.dataset.copy);
      var state = button.parentNode.querySelector(".copy-state");
      function said(text) { if (state) state.textContent = text; }
      function byHand() {
        // No clipboard API (a page served over plain http from elsewhere than localhost).
        input.select();
        said(document.execCommand && document.execCommand("copy") ? "Copied." : "Selected: press Ctrl+C to copy.");
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(function () { said("Copied."); }, byHand);
      } else {
        byHand();
      }
    });
  });

  forgetDrafts();
  var form = document.getElementById("task-form");
  if (form) {
    setUpDrafts(form);
    setUpTaskKeys(form);
  }
  var lease = document.getElementById("lease");
  if (lease) setUpLease(lease);
})();
