// The ranking widget: order K replies best first, with ties, by keyboard, click or drag.
//
// State: `order` (message ids, best first) and `tied[i]` (order[i] is tied with order[i - 1]).
// It is written to the hidden input `tiers` as [[best ids], [next ids], ...], which the form
// posts, and restored from it (so drafts and a re-shown form come back as they were).
// Drag and drop uses pointer events, so mouse, pen and touch behave alike.
(function () {
  "use strict";

  var root = document.getElementById("ranking");
  if (!root) return;
  var form = document.getElementById("task-form");
  var tiersInput = document.getElementById("tiers");
  var allBad = document.getElementById("all-bad");
  var bar = document.getElementById("rank-bar");
  var list = document.getElementById("rank-list");
  var statusText = document.getElementById("rank-status");
  var clientError = document.getElementById("client-error");
  var cards = Array.prototype.slice.call(root.querySelectorAll(".candidate"));
  var byId = {}, byLabel = {};
  cards.forEach(function (card) { byId[card.dataset.id] = card; byLabel[card.dataset.label] = card; });
  var count = cards.length;

  var order = [], tied = [], selected = -1;

  (function restore() {
    try {
      var tiers = JSON.parse(tiersInput.value || "[]");
      tiers.forEach(function (tier) {
        tier.forEach(function (id, index) {
          id = String(id);
          if (byId[id] && order.indexOf(id) === -1) { order.push(id); tied.push(index > 0 && order.length > 1); }
        });
      });
    } catch (error) { order = []; tied = []; }
  })();

  function tiers() {
    var result = [];
    order.forEach(function (id, index) {
      if (index === 0 || !tied[index]) result.push([]);
      result[result.length - 1].push(Number(id));
    });
    return result;
  }

  function snippet(card) {
    var text = card.querySelector(".md").textContent.replace(/\s+/g, " ").trim();
    return text.length > 60 ? text.slice(0, 57) + "…" : text;
  }

  function ordinal(n) {
    var suffix = (n % 100 >= 11 && n % 100 <= 13) ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th");
    return n + suffix;
  }

  function render() {
    list.replaceChildren();
    var ranks = {};
    var position = 0, tierStart = 1;
    order.forEach(function (id, index) {
      if (index > 0) {
        // In a list item of its own: an <ol> holds only <li>s (screen readers count its items).
        var slot = document.createElement("li");
        slot.className = "sep-slot";
        var sep = document.createElement("button");
        sep.type = "button";
        sep.className = "sep" + (tied[index] ? " tied" : "");
        sep.textContent = tied[index] ? "=" : ">";
        sep.title = tied[index] ? "Tied. Click to rank the left one better." : "Left is better. Click to tie the two.";
        sep.dataset.index = index;
        slot.appendChild(sep);
        list.appendChild(slot);
      }
      position += 1;
      if (index === 0 || !tied[index]) tierStart = position;
      ranks[id] = tierStart;
      var card = byId[id];
      var chip = document.createElement("li");
      chip.className = "chip" + (index === selected ? " selected" : "");
      chip.tabIndex = 0;
      chip.dataset.id = id;
      chip.setAttribute("aria-label", "Reply " + card.dataset.label);
      var key = document.createElement("kbd");
      key.textContent = card.dataset.label;
      var text = document.createElement("span");
      text.className = "snippet";
      text.textContent = snippet(card);
      chip.append(key, text);
      list.appendChild(chip);
    });
    var tiedIds = {};
    order.forEach(function (id, index) {
      if (tied[index] || tied[index + 1]) tiedIds[id] = true;
    });
    cards.forEach(function (card) {
      var id = card.dataset.id;
      var placed = id in ranks;
      card.classList.toggle("placed", placed);
      card.classList.toggle("selected", selected >= 0 && order[selected] === id);
      card.querySelector(".rank-badge").textContent = placed ? (tiedIds[id] ? "tied " : "") + ordinal(ranks[id]) : "";
    });
    root.classList.toggle("all-bad", allBad.checked);
    statusText.textContent = allBad.checked ? "all marked unacceptable" : order.length + " of " + count + " placed";
  }

  function commit() {
    tiersInput.value = order.length ? JSON.stringify(tiers()) : "";
    clientError.hidden = true;
    render();
    form.dispatchEvent(new Event("draft"));
  }

  function removeAt(index) {
    // The head of a tier leaves: the next one, if it was tied to it, heads the tier now.
    if (!tied[index] && tied[index + 1]) tied[index + 1] = false;
    order.splice(index, 1);
    tied.splice(index, 1);
    if (tied.length) tied[0] = false;
  }

  function insertAt(id, index) {
    index = Math.max(0, Math.min(index, order.length));
    order.splice(index, 0, id);
    tied.splice(index, 0, false);
    // An item dropped between two tied ones splits their tie.
    if (index + 1 < tied.length) tied[index + 1] = false;
    return index;
  }

  // Put the reply at `index` of the order without it (the end when undefined).
  function place(id, index) {
    var from = order.indexOf(id);
    var wasNew = from === -1;
    if (!wasNew) removeAt(from);
    selected = insertAt(id, index === undefined ? order.length : index);
    if (allBad.checked) allBad.checked = false;
    // When one reply is left, its place is known: put it last.
    if (wasNew && order.length === count - 1) {
      cards.forEach(function (card) {
        if (order.indexOf(card.dataset.id) === -1) insertAt(card.dataset.id, order.length);
      });
    }
    commit();
  }

  function placeNext(id) {
    if (order.indexOf(id) !== -1) select(order.indexOf(id));
    else place(id);
  }

  function select(index) {
    selected = index;
    var id = order[index];
    list.querySelectorAll(".chip").forEach(function (chip) { chip.classList.toggle("selected", chip.dataset.id === id); });
    cards.forEach(function (card) { card.classList.toggle("selected", card.dataset.id === id); });
  }

  function move(delta) {
    if (selected < 0) return;
    var target = selected + delta;
    if (target < 0 || target >= order.length) return;
    var id = order[selected];
    removeAt(selected);
    selected = insertAt(id, target);
    commit();
  }

  function toggleTie() {
    if (selected < 0 || order.length < 2) return;
    var index = selected === 0 ? 1 : selected;
    tied[index] = !tied[index];
    commit();
  }

  function unplace() {
    if (selected < 0) return;
    removeAt(selected);
    selected = Math.min(selected, order.length - 1);
    commit();
  }

  // Keyboard --------------------------------------------------------------------------------
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    var help = document.getElementById("help");
    if (help && help.open) return;
    var target = event.target;
    if (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type === "text")) return;
    if (target.closest && target.closest(".flag-menu")) return;  // keys there belong to the flag form
    var key = event.key;
    if (byLabel[key]) {
      event.preventDefault();
      placeNext(byLabel[key].dataset.id);
    } else if (key === "ArrowUp" || key === "ArrowLeft") {
      if (selected < 0) return;
      event.preventDefault();
      move(-1);
    } else if (key === "ArrowDown" || key === "ArrowRight") {
      if (selected < 0) return;
      event.preventDefault();
      move(1);
    } else if (key === "t" || key === "T" || key === "=") {
      event.preventDefault();
      toggleTie();
    } else if (key === "Backspace" || key === "Delete") {
      event.preventDefault();
      unplace();
    } else if (key === "0") {
      event.preventDefault();
      allBad.checked = !allBad.checked;
      commit();
    } else if (key === "Escape") {
      select(-1);
    }
  });

  allBad.addEventListener("change", commit);

  list.addEventListener("click", function (event) {
    var sep = event.target.closest(".sep");
    if (sep) {
      tied[Number(sep.dataset.index)] = !tied[Number(sep.dataset.index)];
      commit();
    }
  });

  list.addEventListener("focusin", function (event) {
    var chip = event.target.closest(".chip");
    if (chip) select(order.indexOf(chip.dataset.id));
  });

  form.addEventListener("submit", function (event) {
    var problem = null;
    if (!allBad.checked) {
      if (order.length < count) problem = "Place all " + count + " replies in your ranking first (" + (count - order.length) + " left), or mark them all unacceptable.";
      else if (tiers().length < 2) problem = "All replies are tied, which says nothing. Rank them, or mark them all unacceptable.";
    }
    if (problem) {
      event.preventDefault();
      clientError.textContent = problem;
      clientError.hidden = false;
    }
  });

  // Pointer drag and drop -------------------------------------------------------------------
  var drag = null;
  var DRAG_START_PX = 6;

  function dropIndex(x, y, id) {
    // Where the dragged reply would go: before the first other chip that the pointer is above
    // or to the left of (on the same row).
    var chips = Array.prototype.slice.call(list.querySelectorAll(".chip")).filter(function (chip) {
      return chip.dataset.id !== id;
    });
    for (var i = 0; i < chips.length; i++) {
      var rect = chips[i].getBoundingClientRect();
      if (y < rect.top) return i;
      if (y <= rect.bottom && x < rect.left + rect.width / 2) return i;
    }
    return chips.length;
  }

  function overBar(x, y) {
    var rect = bar.getBoundingClientRect();
    return x >= rect.left && x <= rect.right && y >= rect.top - 12 && y <= rect.bottom;
  }

  function showMarker(index) {
    var old = list.querySelector(".drop-marker");
    if (old) old.remove();
    if (index === null) return;
    var marker = document.createElement("li");
    marker.className = "drop-marker";
    marker.setAttribute("aria-hidden", "true");
    var chips = Array.prototype.slice.call(list.querySelectorAll(".chip")).filter(function (chip) {
      return chip.dataset.id !== drag.id;
    });
    var before = chips[index];
    if (before) {
      var previous = before.previousElementSibling;
      list.insertBefore(marker, previous && previous.classList.contains("sep-slot") ? previous : before);
    } else {
      list.appendChild(marker);
    }
  }

  root.addEventListener("pointerdown", function (event) {
    if (event.button !== 0 || event.target.closest("a, button, input, label, summary, .flag-menu")) return;
    var source = event.target.closest(".chip, .candidate");
    if (!source) return;
    // Touch scrolls the page over a reply's text: only its header (and chips) start a drag.
    if (event.pointerType !== "mouse" && source.classList.contains("candidate") && !event.target.closest(".candidate-head")) return;
    drag = { id: source.dataset.id, fromChip: source.classList.contains("chip"), x: event.clientX, y: event.clientY, started: false, ghost: null };
  });

  document.addEventListener("pointermove", function (event) {
    if (!drag) return;
    if (!drag.started) {
      if (Math.abs(event.clientX - drag.x) + Math.abs(event.clientY - drag.y) < DRAG_START_PX) return;
      drag.started = true;
      document.body.classList.add("dragging");
      drag.ghost = document.createElement("div");
      drag.ghost.className = "drag-ghost";
      drag.ghost.textContent = "Reply " + byId[drag.id].dataset.label + ": " + snippet(byId[drag.id]);
      document.body.appendChild(drag.ghost);
      var chip = list.querySelector('.chip[data-id="' + drag.id + '"]');
      if (chip) chip.classList.add("drag-source");
    }
    event.preventDefault();
    drag.ghost.style.left = event.clientX + "px";
    drag.ghost.style.top = event.clientY + "px";
    var inside = overBar(event.clientX, event.clientY);
    bar.classList.toggle("drop-target", inside);
    showMarker(inside ? dropIndex(event.clientX, event.clientY, drag.id) : null);
  });

  function endDrag(event, cancelled) {
    if (!drag) return;
    var current = drag;
    drag = null;
    document.body.classList.remove("dragging");
    bar.classList.remove("drop-target");
    var marker = list.querySelector(".drop-marker");
    if (marker) marker.remove();
    if (current.ghost) current.ghost.remove();
    if (cancelled) { render(); return; }
    if (!current.started) {
      // A click: a reply goes next in the ranking; a chip gets selected.
      if (current.fromChip) select(order.indexOf(current.id));
      else placeNext(current.id);
      return;
    }
    if (overBar(event.clientX, event.clientY)) {
      place(current.id, dropIndex(event.clientX, event.clientY, current.id));
    } else if (current.fromChip) {
      var index = order.indexOf(current.id);
      if (index !== -1) { selected = index; unplace(); }
    } else {
      render();
    }
  }

  document.addEventListener("pointerup", function (event) { endDrag(event, false); });
  document.addEventListener("pointercancel", function (event) { endDrag(event, true); });

  render();
})();
