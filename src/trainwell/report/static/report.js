/* The run report's script: a thin layer of interaction over the SVG charts that
   trainwell.report.charts draws in Python (the page shows every chart without it).
   It only switches and reads what the SVG already holds:
   - "log y" / "linear y" shows the other of the chart's two <g class="yscale"> groups;
   - "smoothed" / "raw" toggles the class raw-only on the <svg> (report.css then hides
     the smoothed overlay and shows the raw line at full strength);
   - the step slider of a histogram shows one <g class="frame"> at a time;
   - moving the mouse over a chart with data-xmap moves its crosshair line to the nearest
     logged x and lists each visible line's value there, read from the data-x / data-y
     attributes of its <g class="hover"> (data-x may sit on the <svg>, shared).
   When every chart was wired without an exception and window.onerror never fired it
   appends a div with the id render-ok, which the browser test looks for in the dumped DOM.
   Inlined into report.html by trainwell.report.page. */
(function () {
"use strict";
var errors = [];
window.addEventListener("error", function (e) { errors.push(String(e.message || e)); });

function all(root, selector) { return Array.prototype.slice.call(root.querySelectorAll(selector)); }
function shown(el) { return !el.closest('[display="none"]'); }
function fmt(v) {  // 4 significant digits, exponent form for very large or small values
  if (!isFinite(v)) return "non-finite";
  var a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2).replace("e+", "e");
  return String(Number(v.toPrecision(4)));
}

function scaleButton(panel, button) {
  var groups = all(panel, "g.yscale");
  function label() {
    var log = groups.some(function (g) { return shown(g) && g.getAttribute("data-scale") === "log"; });
    button.textContent = log ? "log y" : "linear y";
    button.title = "click to switch the y axis to a " + (log ? "linear" : "log") + " scale";
  }
  button.addEventListener("click", function () {
    groups.forEach(function (g) {
      if (shown(g)) g.setAttribute("display", "none"); else g.removeAttribute("display");
    });
    label();
  });
  label();
}

function smoothButton(panel, button) {
  var svg = panel.querySelector("svg.chart");
  function label() {
    var raw = svg.classList.contains("raw-only");
    button.textContent = raw ? "raw" : "smoothed";
    button.title = "click to " + (raw ? "show" : "hide") + " the smoothed line (moving mean) over the raw values";
  }
  button.addEventListener("click", function () { svg.classList.toggle("raw-only"); label(); });
  label();
}

function slider(panel, input) {
  var frames = all(panel, "g.frame"), text = input.nextElementSibling;
  input.addEventListener("input", function () {
    frames.forEach(function (g, i) {
      if (i === Number(input.value)) g.removeAttribute("display"); else g.setAttribute("display", "none");
    });
    text.textContent = frames[Number(input.value)].getAttribute("data-name");
  });
}

function crosshair(panel, svg) {
  var map = svg.getAttribute("data-xmap").split(" ");
  var a = +map[0], b = +map[1], lo = +map[2], hi = +map[3], log = map[4] === "log";
  var xname = svg.getAttribute("data-xname") || "x";
  function px(x) { return a + ((log ? Math.log10(x) : x) - lo) / (hi - lo) * (b - a); }
  var series = all(svg, "g.hover").map(function (g) {
    var xs = g.getAttribute("data-x") || svg.getAttribute("data-x");  // a histogram's frames share their bins
    return {g: g, label: g.getAttribute("data-label"),
            xs: xs.split(" ").map(Number), ys: g.getAttribute("data-y").split(" ").map(Number)};
  });
  var line = svg.querySelector("line.crosshair");
  var tip = document.createElement("div");
  tip.className = "tip"; tip.style.display = "none"; panel.appendChild(tip);
  function hide() { line.setAttribute("visibility", "hidden"); tip.style.display = "none"; }
  function nearest(s, at) {
    var hit = null;
    s.xs.forEach(function (x, i) { var d = Math.abs(px(x) - at); if (hit === null || d < hit.d) hit = {d: d, x: x, y: s.ys[i]}; });
    return hit;
  }
  svg.addEventListener("mouseleave", hide);
  svg.addEventListener("mousemove", function (ev) {
    var r = svg.getBoundingClientRect(), k = svg.viewBox.baseVal.width / r.width, at = (ev.clientX - r.left) * k;
    var best = null, rows = [];
    series.forEach(function (s) {
      var hit = shown(s.g) ? nearest(s, at) : null;
      if (hit === null || hit.d > 40) return;
      rows.push(s.label + ": " + fmt(hit.y));
      if (best === null || hit.d < best.d) best = hit;
    });
    if (best === null) { hide(); return; }
    var x = px(best.x).toFixed(1), p = panel.getBoundingClientRect();
    line.setAttribute("x1", x); line.setAttribute("x2", x); line.setAttribute("visibility", "visible");
    tip.textContent = "";
    [xname + " " + fmt(best.x)].concat(rows).forEach(function (text, i) {
      var row = document.createElement("div"); row.textContent = text; if (i === 0) row.className = "head"; tip.appendChild(row);
    });
    tip.style.display = "block";
    tip.style.left = Math.min(r.left - p.left + x / k + 12, p.width - 200) + "px";
    tip.style.top = (r.top - p.top + 16) + "px";
  });
}

var wired = 0;
all(document, ".panel").forEach(function (panel) {
  try {
    all(panel, 'button[data-toggle="scale"]').forEach(function (btn) { scaleButton(panel, btn); });
    all(panel, 'button[data-toggle="smooth"]').forEach(function (btn) { smoothButton(panel, btn); });
    all(panel, ".slider input").forEach(function (input) { slider(panel, input); });
    all(panel, "svg.chart[data-xmap]").forEach(function (svg) { crosshair(panel, svg); });
    wired += all(panel, "svg.chart").length;
  } catch (err) {
    errors.push((panel.id || "a panel") + ": " + err);
  }
});
var status = document.getElementById("render-status");
if (errors.length === 0) {
  var ok = document.createElement("div");
  ok.id = "render-ok"; ok.setAttribute("data-charts", String(wired)); ok.style.display = "none";
  document.body.appendChild(ok);
} else if (status) {
  status.className = "error"; status.textContent = "Some charts failed: " + errors.join("; ");
}
})();
