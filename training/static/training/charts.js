// Line charts as SVG built in the page, for the training pages: a round's curves, the models'
// scores across rounds. Our own few lines rather than a chart library: the pages need lines, axes
// and a legend, and every script must be a file of ours (the Content-Security-Policy allows no other).
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var WIDTH = 480, HEIGHT = 220, LEFT = 58, RIGHT = 14, TOP = 12, BOTTOM = 34;
  // Distinct at a glance and for the common colour blindnesses (Okabe-Ito).
  var COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"];

  function element(name, attributes, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attributes || {}).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function html(name, className, text) {
    var node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // A number as a person reads it on an axis or in a caption: three significant digits, no
  // trailing zeros, powers of ten for the very large and the very small.
  function format(value) {
    if (typeof value !== "number" || !isFinite(value)) return String(value);
    var size = Math.abs(value);
    if (size !== 0 && (size >= 1e5 || size < 1e-3)) return value.toExponential(2).replace(/\.?0+e/, "e");
    return String(Number(value.toPrecision(3)));
  }

  // Round tick positions over [low, high]: steps of 1, 2 or 5 times a power of ten.
  function ticks(low, high, count) {
    if (high === low) return [low];
    var rough = (high - low) / count;
    var power = Math.pow(10, Math.floor(Math.log10(rough)));
    var step = [1, 2, 5, 10].map(function (m) { return m * power; }).filter(function (s) { return s >= rough; })[0];
    var found = [];
    for (var at = Math.ceil(low / step) * step; at <= high + step * 1e-9; at += step) found.push(Number(at.toPrecision(12)));
    return found;
  }

  function extent(values) {
    var low = Math.min.apply(null, values), high = Math.max.apply(null, values);
    if (low === high) { var pad = low === 0 ? 1 : Math.abs(low) * 0.1; return [low - pad, high + pad]; }
    return [low, high];
  }

  // Draw one chart. options: {title, unit, xLabel, series: [{name, points: [[x, y, label?], ...]}],
  // dots: always mark points (else only a series of fewer than 3), yInclude: values the y axis
  // spans whatever the points (0 and 100 for percentages)}. Return a <figure>.
  function chart(options) {
    var figure = html("figure", "chart");
    figure.dataset.title = options.title;
    var series = options.series.filter(function (s) { return s.points.length; });
    var all = [].concat.apply([], series.map(function (s) { return s.points; }));
    var caption = html("figcaption", "chart-title", options.title + (options.unit ? " (" + options.unit + ")" : ""));
    figure.appendChild(caption);
    var svg = element("svg", { viewBox: "0 0 " + WIDTH + " " + HEIGHT, role: "img", class: "chart-svg" }, figure);
    element("title", {}, svg).textContent = options.title;
    if (!all.length) {
      var empty = element("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "chart-empty" }, svg);
      empty.textContent = "no points yet";
      return figure;
    }
    var xs = extent(all.map(function (p) { return p[0]; }));
    var ys = extent(all.map(function (p) { return p[1]; }).concat(options.yInclude || []));
    function x(value) { return LEFT + (value - xs[0]) / (xs[1] - xs[0]) * (WIDTH - LEFT - RIGHT); }
    function y(value) { return HEIGHT - BOTTOM - (value - ys[0]) / (ys[1] - ys[0]) * (HEIGHT - TOP - BOTTOM); }

    var grid = element("g", { class: "chart-axis" }, svg);
    ticks(ys[0], ys[1], 4).forEach(function (at) {
      element("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(at), y2: y(at), class: "chart-grid" }, grid);
      element("text", { x: LEFT - 6, y: y(at) + 4, "text-anchor": "end" }, grid).textContent = format(at);
    });
    ticks(xs[0], xs[1], 5).filter(function (at) { return options.integerX === false || Math.round(at) === at; })
      .forEach(function (at) {
        element("line", { x1: x(at), x2: x(at), y1: HEIGHT - BOTTOM, y2: HEIGHT - BOTTOM + 4 }, grid);
        element("text", { x: x(at), y: HEIGHT - BOTTOM + 16, "text-anchor": "middle" }, grid).textContent = format(at);
      });
    element("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: HEIGHT - BOTTOM, y2: HEIGHT - BOTTOM }, grid);
    element("text", { x: (LEFT + WIDTH - RIGHT) / 2, y: HEIGHT - 4, "text-anchor": "middle", class: "chart-x-label" }, grid)
      .textContent = options.xLabel || "";

    var legend = html("ul", "chart-legend");
    series.forEach(function (s, index) {
      var colour = COLOURS[index % COLOURS.length];
      var line = element("g", { class: "chart-series" }, svg);
      line.dataset.series = s.name;
      line.dataset.points = String(s.points.length);
      element("polyline", {
        points: s.points.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); }).join(" "),
        fill: "none", stroke: colour, "stroke-width": 1.8,
      }, line);
      if (options.dots || s.points.length < 3) {
        s.points.forEach(function (p) {
          var dot = element("circle", { cx: x(p[0]), cy: y(p[1]), r: 3.2, fill: colour }, line);
          element("title", {}, dot).textContent = (p[2] ? p[2] + ": " : "") + format(p[1]) + (options.unit ? " " + options.unit : "");
        });
      }
      var last = s.points[s.points.length - 1];
      var item = html("li");
      var swatch = html("span", "chart-swatch");
      swatch.style.background = colour;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.name + ": " + format(last[1]) + " at " + (options.xLabel || "x") + " " + format(last[0])));
      legend.appendChild(item);
    });
    figure.appendChild(legend);
    return figure;
  }

  window.TrainingCharts = { chart: chart, format: format };
})();
