/* The run report's script: draws every chart as inline SVG from the page's embedded JSON
   (<script id="report-data">). Written by hand because the report must open offline and no
   plotting library may be fetched at view time. It draws line charts (log/linear toggle, a
   moving-mean overlay, shared step axis, faded abandoned stretches, non-finite markers,
   autopilot markers with the logbook message on hover, a crosshair read-out), 1d histograms
   (with a step slider) and 2d heat maps. When every chart drew without an exception and
   window.onerror never fired it appends a div with the id render-ok, which the browser test looks
   for in the dumped DOM. Inlined into report.html by trainwell.report.page. */
(function () {
"use strict";
var errors = [];
window.addEventListener("error", function (e) { errors.push(String(e.message || e)); });
var DATA = JSON.parse(document.getElementById("report-data").textContent);
var NS = "http://www.w3.org/2000/svg";
var EV = DATA.colors;
var M = {l: 64, r: 14, t: 12, b: 38};

function svg(tag, attrs, parent) {
  var e = document.createElementNS(NS, tag);
  for (var k in attrs) { if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]); }
  if (parent) parent.appendChild(e);
  return e;
}
function div(cls, parent, text) {
  var e = document.createElement("div");
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function title(node, text) { svg("title", {}, node).textContent = text; }
function fmt(v) {
  if (v === null || v === undefined) return "-";
  var a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2).replace("e+", "e");
  return String(Number(v.toPrecision(4)));
}
function tick(v) {  // axis labels: 200k, 1.5M, 5e-4
  var a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e3) {
    var u = a >= 1e9 ? [1e9, "G"] : a >= 1e6 ? [1e6, "M"] : [1e3, "k"];
    return String(Number((v / u[0]).toPrecision(3))) + u[1];
  }
  if (a < 1e-3) return v.toExponential(1).replace(/\.0e/, "e");
  return String(Number(v.toPrecision(4)));
}
function linTicks(lo, hi, n) {
  var span = hi - lo, step = Math.pow(10, Math.floor(Math.log10(span / n)));
  var err = span / n / step;
  if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
  var out = [], t = Math.ceil(lo / step) * step;
  for (; t <= hi + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return out;
}
function logTicks(lo, hi) {
  var a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi)), out = [];
  var every = Math.max(1, Math.ceil((b - a) / 6));
  for (var p = a; p <= b; p += every) { var t = Math.pow(10, p); if (t >= lo && t <= hi) out.push(t); }
  if (out.length < 2) { out = [lo, Math.sqrt(lo * hi), hi]; }
  return out;
}
function extent(panel, log) {
  if (panel.fixed) return panel.fixed.slice();
  var lo = Infinity, hi = -Infinity;
  (panel.hlines || []).forEach(function (r) { if (!log || r.y > 0) { lo = Math.min(lo, r.y); hi = Math.max(hi, r.y); } });
  panel.series.forEach(function (s) { s.segs.forEach(function (g) { g.y.forEach(function (y) {
    if (y === null || (log && y <= 0)) return;
    if (y < lo) lo = y; if (y > hi) hi = y;
  }); }); });
  if (!isFinite(lo)) return log ? [0.1, 1] : [0, 1];
  if (log) return [lo / 1.3, hi * 1.3];
  if (lo === hi) { var d = Math.abs(lo) * 0.1 || 1; return [lo - d, hi + d]; }
  var pad = (hi - lo) * 0.06;
  return [lo - pad, hi + pad];
}
function frame(box, w, h) {
  var s = svg("svg", {width: w, height: h, viewBox: "0 0 " + w + " " + h, "class": "chart"}, box);
  svg("rect", {x: 0, y: 0, width: w, height: h, fill: "#ffffff"}, s);
  return s;
}
function axes(s, w, h, xs, ys, xt, yt, xlabel, ylabel) {
  var g = svg("g", {"class": "axes"}, s);
  yt.forEach(function (t) {
    var y = ys(t);
    svg("line", {x1: M.l, x2: w - M.r, y1: y, y2: y, stroke: "#e6e6e6"}, g);
    svg("text", {x: M.l - 6, y: y + 4, "text-anchor": "end"}, g).textContent = tick(t);
  });
  xt.forEach(function (t) {
    var x = xs(t);
    svg("line", {x1: x, x2: x, y1: M.t, y2: h - M.b, stroke: "#f0f0f0"}, g);
    svg("text", {x: x, y: h - M.b + 15, "text-anchor": "middle"}, g).textContent = tick(t);
  });
  svg("rect", {x: M.l, y: M.t, width: w - M.l - M.r, height: h - M.t - M.b, fill: "none", stroke: "#999"}, g);
  svg("text", {x: (M.l + w - M.r) / 2, y: h - 4, "text-anchor": "middle", "class": "axlabel"}, g).textContent = xlabel;
  var yl = svg("text", {x: 0, y: 0, "text-anchor": "middle", "class": "axlabel",
    transform: "translate(13," + ((M.t + h - M.b) / 2) + ") rotate(-90)"}, g);
  yl.textContent = ylabel;
}
function pathOf(g, xs, ys, stepShape) {
  var d = "", pen = false, lastY = null;
  for (var i = 0; i < g.x.length; i++) {
    var y = g.y[i];
    if (y === null || !isFinite(ys(y))) { pen = false; continue; }
    var px = xs(g.x[i]).toFixed(1), py = ys(y).toFixed(1);
    if (!pen) d += "M" + px + " " + py;
    else if (stepShape) d += "H" + px + "V" + py;
    else d += "L" + px + " " + py;
    pen = true; lastY = py;
  }
  return d;
}
function legend(box, items) {
  var lg = div("legend", box);
  items.forEach(function (it) {
    var e = div("item", lg);
    var sw = div("swatch" + (it.dash ? " dash" : "") + (it.marker ? " marker" : ""), e);
    sw.style.borderColor = it.color; if (!it.dash && !it.marker) sw.style.background = it.color;
    div(null, e, it.label).style.display = "inline";
  });
}

function lineChart(panel, box) {
  var state = {log: panel.log};
  var bar = div("tools", box);
  var btn = document.createElement("button"); bar.appendChild(btn);
  var events = panel.events ? DATA.events.filter(function (e) { return e.x >= DATA.xrange[0] && e.x <= DATA.xrange[1]; }) : [];
  var smoothable = panel.series.some(function (s) { return s.smooth; });
  var sbtn = null;
  if (smoothable) { sbtn = document.createElement("button"); bar.appendChild(sbtn); state.smooth = true; }
  legend(box, panel.series.map(function (s) { return {label: s.label, color: s.color, dash: s.dash}; }));
  var host = div("plot", box);
  function render() {
    host.innerHTML = "";
    btn.textContent = state.log ? "log y" : "linear y";
    btn.title = "click to switch the y axis to a " + (state.log ? "linear" : "log") + " scale";
    if (sbtn) { sbtn.textContent = state.smooth ? "smoothed" : "raw"; sbtn.title = "click to " + (state.smooth ? "hide" : "show") + " the smoothed line (moving mean) over the raw values"; }
    var w = Math.max(320, host.clientWidth || 560), h = 250;
    var s = frame(host, w, h);
    var ex = DATA.xrange[1] > DATA.xrange[0] ? DATA.xrange : [DATA.xrange[0] - 1, DATA.xrange[1] + 1];
    var ey = extent(panel, state.log);
    var xs = function (x) { return M.l + (x - ex[0]) / (ex[1] - ex[0]) * (w - M.l - M.r); };
    var ys = state.log
      ? function (y) { return y > 0 ? h - M.b - (Math.log(y) - Math.log(ey[0])) / (Math.log(ey[1]) - Math.log(ey[0])) * (h - M.t - M.b) : NaN; }
      : function (y) { return h - M.b - (y - ey[0]) / (ey[1] - ey[0]) * (h - M.t - M.b); };
    axes(s, w, h, xs, ys, linTicks(ex[0], ex[1], Math.max(3, Math.floor(w / 110))),
         state.log ? logTicks(ey[0], ey[1]) : linTicks(ey[0], ey[1], 5), "step", panel.ylabel);
    var clip = "clip-" + panel.id;
    svg("rect", {x: M.l, y: M.t, width: w - M.l - M.r, height: h - M.t - M.b}, svg("clipPath", {id: clip}, s));
    var plot = svg("g", {"clip-path": "url(#" + clip + ")"}, s);
    (panel.hlines || []).forEach(function (r) {
      var y = ys(r.y);
      if (!isFinite(y)) return;
      svg("line", {x1: M.l, x2: w - M.r, y1: y, y2: y, stroke: "#666", "stroke-dasharray": "2 3"}, plot);
      if (r.label) svg("text", {x: w - M.r - 4, y: y - 4, "text-anchor": "end", "class": "reflabel"}, plot).textContent = r.label;
    });
    var taken = {};
    events.forEach(function (e) {  // markers of different kinds at one step sit side by side
      var px = Math.round(xs(e.x)), x = px + 2.5 * (taken[px] || 0), g = svg("g", {"class": "event"}, plot);
      taken[px] = (taken[px] || 0) + 1;
      svg("line", {x1: x, x2: x, y1: M.t, y2: h - M.b, stroke: EV[e.kind] || "#888", "stroke-width": 1.2,
                   "stroke-dasharray": e.kind === "restart" ? "5 3" : null, opacity: 0.8}, g);
      svg("line", {x1: x, x2: x, y1: M.t, y2: h - M.b, stroke: "transparent", "stroke-width": 8}, g);
      title(g, e.kind + " at step " + e.x + (e.count > 1 ? " (x" + e.count + ")" : "") + ": " + e.message);
      if (panel.labels && e.label) {
        svg("text", {x: x + 3, y: M.t + 12, "class": "evlabel", fill: EV[e.kind] || "#555"}, g).textContent = e.label;
      }
    });
    panel.series.forEach(function (sr) {
      sr.segs.forEach(function (g) {
        var d = pathOf(g, xs, ys, sr.shape === "step");
        if (!d) return;
        var faint = sr.smooth && state.smooth && !g.faded;
        svg("path", {d: d, fill: "none", stroke: g.faded ? "#aaaaaa" : sr.color, "stroke-width": g.faded ? 1.2 : faint ? 1 : 1.7,
                     "stroke-opacity": faint ? 0.3 : 1,
                     "stroke-dasharray": (sr.dash || g.faded) ? "6 4" : null, "stroke-linejoin": "round"}, plot);
        if (sr.points) g.x.forEach(function (x, i) {
          if (g.y[i] !== null && isFinite(ys(g.y[i])))
            svg("circle", {cx: xs(x), cy: ys(g.y[i]), r: 2.6, fill: g.faded ? "#aaaaaa" : sr.color}, plot);
        });
      });
      if (sr.smooth && state.smooth) sr.smooth.forEach(function (g) {
        svg("path", {d: pathOf(g, xs, ys, false), fill: "none", stroke: sr.color, "stroke-width": 2,
                     "stroke-linejoin": "round", "class": "smoothed"}, plot);
      });
      sr.bad.forEach(function (b) {
        var x = xs(b[0]), t = svg("path", {d: "M" + (x - 5) + " " + (M.t + 1) + "L" + (x + 5) + " " + (M.t + 1) + "L" + x + " " + (M.t + 9) + "Z",
                                           fill: "#d00000", "class": "nonfinite"}, s);
        title(t, sr.label + " = " + b[1] + " at step " + b[0]);
      });
    });
    crosshair(panel, host, s, w, h, xs);
  }
  btn.addEventListener("click", function () { state.log = !state.log; render(); });
  if (sbtn) sbtn.addEventListener("click", function () { state.smooth = !state.smooth; render(); });
  render();
  return render;
}

function crosshair(panel, host, s, w, h, xs) {
  var line = svg("line", {y1: M.t, y2: h - M.b, stroke: "#555", "stroke-width": 0.8, visibility: "hidden"}, s);
  var tip = div("tip", host); tip.style.display = "none";
  var overlay = svg("rect", {x: M.l, y: M.t, width: w - M.l - M.r, height: h - M.t - M.b, fill: "transparent"}, s);
  overlay.addEventListener("mouseleave", function () { line.setAttribute("visibility", "hidden"); tip.style.display = "none"; });
  overlay.addEventListener("mousemove", function (ev) {
    var r = s.getBoundingClientRect(), px = ev.clientX - r.left, best = null, lines = [];
    panel.series.forEach(function (sr) {
      var hit = null;
      sr.segs.forEach(function (g) { if (!g.faded) g.x.forEach(function (x, i) {
        var d = Math.abs(xs(x) - px);
        if (hit === null || d < hit.d) hit = {d: d, x: x, y: g.y[i]};
      }); });
      if (hit && hit.d < 40) { lines.push(sr.label + ": " + (hit.y === null ? "non-finite" : fmt(hit.y))); if (best === null || hit.d < best.d) best = hit; }
    });
    if (best === null) return;
    line.setAttribute("x1", xs(best.x)); line.setAttribute("x2", xs(best.x)); line.setAttribute("visibility", "visible");
    tip.textContent = ""; div("head", tip, "step " + best.x); lines.forEach(function (l) { div(null, tip, l); });
    tip.style.display = "block";
    tip.style.left = Math.min(px + 12, w - 200) + "px"; tip.style.top = (M.t + 4) + "px";
  });
}

function hist1d(panel, box, small) {
  var idx = panel.counts.length - 1, label = null;
  if (panel.steps.length > 1) {
    var bar = div("slider", box), input = document.createElement("input");
    input.type = "range"; input.min = 0; input.max = panel.steps.length - 1; input.value = idx;
    label = document.createElement("span"); bar.appendChild(input); bar.appendChild(label);
    input.addEventListener("input", function () { idx = Number(input.value); render(); });
  }
  var host = div("plot", box);
  function render() {
    host.innerHTML = "";
    if (label) label.textContent = " step " + panel.steps[idx];
    var w = small ? 250 : Math.max(320, host.clientWidth || 560), h = small ? 150 : 250;
    var s = frame(host, w, h), e = panel.edges, c = panel.counts[idx];
    var top = 1; panel.counts.forEach(function (cs) { cs.forEach(function (v) { if (v + 1 > top) top = v + 1; }); });
    var xs = function (x) { return M.l + (x - e[0]) / (e[e.length - 1] - e[0]) * (w - M.l - M.r); };
    var ys = function (v) { return h - M.b - Math.log10(v + 1) / Math.log10(top) * (h - M.t - M.b); };
    var yt = []; for (var p = 0; Math.pow(10, p) <= top; p += Math.max(1, Math.ceil(Math.log10(top) / 4))) yt.push(Math.pow(10, p));
    axes(s, w, h, xs, ys, linTicks(e[0], e[e.length - 1], small ? 4 : 8), yt, panel.axis, small ? "count" : "count (log scale)");
    c.forEach(function (v, i) {
      if (v <= 0) return;
      var r = svg("rect", {x: xs(e[i]), y: ys(v), width: Math.max(0.5, xs(e[i + 1]) - xs(e[i]) - 0.3), height: h - M.b - ys(v), fill: "#0072B2"}, s);
      title(r, "[" + fmt(e[i]) + ", " + fmt(e[i + 1]) + "): " + v);
    });
  }
  render();
  return render;
}

function heat(t) {  // a viridis-like ramp, t in [0, 1]
  var stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  var p = Math.min(0.9999, Math.max(0, t)) * (stops.length - 1), i = Math.floor(p), f = p - i;
  var c = stops[i].map(function (a, k) { return Math.round(a + (stops[i + 1][k] - a) * f); });
  return "rgb(" + c.join(",") + ")";
}
function hist2d(panel, box) {
  var host = div("plot", box);
  function render() {
    host.innerHTML = "";
    var w = Math.max(320, host.clientWidth || 560), h = 280, s = frame(host, w, h);
    var xe = panel.xedges, ye = panel.yedges, top = 1;
    panel.counts.forEach(function (row) { row.forEach(function (v) { if (v + 1 > top) top = v + 1; }); });
    var xs = function (x) { return M.l + (x - xe[0]) / (xe[xe.length - 1] - xe[0]) * (w - M.l - M.r); };
    var ys = function (y) { return h - M.b - (y - ye[0]) / (ye[ye.length - 1] - ye[0]) * (h - M.t - M.b); };
    svg("rect", {x: M.l, y: M.t, width: w - M.l - M.r, height: h - M.t - M.b, fill: heat(0)}, s);
    panel.counts.forEach(function (row, i) { row.forEach(function (v, j) {
      if (v <= 0) return;
      var r = svg("rect", {x: xs(xe[i]), y: ys(ye[j + 1]), width: xs(xe[i + 1]) - xs(xe[i]) + 0.4,
                           height: ys(ye[j]) - ys(ye[j + 1]) + 0.4, fill: heat(Math.log(v + 1) / Math.log(top))}, s);
      title(r, panel.xaxis + " " + fmt(xe[i]) + ", " + panel.yaxis + " " + fmt(ye[j]) + ": " + v);
    }); });
    axes(s, w, h, xs, ys, linTicks(xe[0], xe[xe.length - 1], 6), linTicks(ye[0], ye[ye.length - 1], 5), panel.xaxis, panel.yaxis);
  }
  render();
  return render;
}

var renderers = [], drawn = 0;
function mount(panel, small) {
  var box = document.getElementById(panel.id);
  if (!box) { errors.push("no element for " + panel.id); return; }
  try {
    var r = panel.kind === "hist1d" ? hist1d(panel, box, small) : panel.kind === "hist2d" ? hist2d(panel, box) : lineChart(panel, box);
    renderers.push(r); drawn += 1;
  } catch (err) {
    errors.push(panel.id + ": " + err);
    div("error", box, "This chart could not be drawn: " + err);
  }
}
DATA.panels.forEach(function (p) { mount(p, false); });
DATA.small.forEach(function (p) { mount(p, true); });
var pending = null;
window.addEventListener("resize", function () {
  clearTimeout(pending);
  pending = setTimeout(function () { renderers.forEach(function (r) { try { r(); } catch (err) { errors.push(String(err)); } }); }, 150);
});
var status = document.getElementById("render-status");
if (errors.length === 0) {
  var ok = div(null, document.body); ok.id = "render-ok"; ok.setAttribute("data-charts", String(drawn)); ok.style.display = "none";
} else if (status) {
  status.className = "error"; status.textContent = "Some charts failed: " + errors.join("; ");
}
})();
