"""The page's stylesheet (inline: the report must open offline, with no external font).

System font stacks only; print-friendly white background; charts in a two- or
three-column grid that falls back to one column on narrow screens.
"""

from __future__ import annotations

STYLE = """
* { box-sizing: border-box; }
body { margin: 0; padding: 18px 24px 40px; background: #f5f6f8; color: #1d2330;
  font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 17px; margin: 26px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #d9dde5; }
h3 { font-size: 13px; margin: 0 0 6px; text-transform: uppercase; letter-spacing: .05em; color: #4a5568; }
code { background: #eceff4; padding: 1px 4px; border-radius: 3px; }
.sub { color: #5a6475; margin-bottom: 12px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 10px; font-weight: 600; font-size: 13px; margin-left: 8px; vertical-align: 3px; }
.badge.ok { background: #d9f2e3; color: #0b6b34; } .badge.warn { background: #fff0cc; color: #8a5a00; }
.badge.bad { background: #fde0dc; color: #a61b0b; }
.cards { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 12px; }
.card, .panel, .finding { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 10px 12px; }
table.facts { border-collapse: collapse; width: 100%; font-size: 13px; }
table.facts th { text-align: left; font-weight: 500; color: #5a6475; padding: 1px 10px 1px 0; white-space: nowrap; vertical-align: top; }
table.facts td { padding: 1px 0; word-break: break-word; }
.finding { display: flex; gap: 12px; margin-bottom: 8px; border-left: 5px solid #56B4E9; }
.finding.bad { border-left-color: #D55E00; } .finding.warn { border-left-color: #E69F00; }
.finding .sev { font-weight: 700; text-transform: uppercase; font-size: 12px; min-width: 70px; color: #4a5568; }
.finding .evidence { color: #3b4454; margin: 2px 0; } .finding .fix { color: #1d2330; }
.muted { color: #7a8394; } .ok-text { color: #0b6b34; }
.grid2, .grid3 { display: grid; gap: 12px; }
.grid2 { grid-template-columns: repeat(2, minmax(0, 1fr)); }
.grid3 { grid-template-columns: repeat(3, minmax(0, 1fr)); }
.column > h3 { text-align: center; background: #e8ebf1; padding: 4px; border-radius: 4px; }
.column .panel { margin-bottom: 12px; }
.panel { position: relative; min-width: 0; }
.panel .ptitle { font-weight: 600; font-size: 14px; }
.panel .note { color: #6a7385; font-size: 12px; margin: 1px 0 2px; }
.panel .tools { position: absolute; top: 8px; right: 10px; font-size: 11px; color: #5a6475; }
.panel .tools button { font-size: 11px; border: 1px solid #ccd2dc; background: #f7f8fa; border-radius: 4px; cursor: pointer; padding: 1px 6px; }
.panel .slider { font-size: 12px; color: #3b4454; margin: 2px 0; display: flex; align-items: center; gap: 8px; }
.panel .slider input { flex: 1; }
.panel .tools button + button { margin-left: 4px; }
.key { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12px; color: #3b4454; margin: -2px 0 10px; align-items: center; }
.key .swatch { display: inline-block; width: 0; height: 13px; border-left: 2px solid; margin-right: 5px; vertical-align: middle; }
.key .swatch.dash { border-left-style: dashed; }
.key .swatch.line { width: 18px; height: 0; border-left: 0; border-top: 2px dashed #aaaaaa; }
.key .tri { color: #d00000; margin-right: 4px; }
.panel .plot { position: relative; width: 100%; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; color: #3b4454; margin: 2px 0 2px; }
.legend .item { white-space: nowrap; }
.legend .swatch { display: inline-block; width: 16px; height: 0; border-top: 3px solid; vertical-align: middle; margin-right: 4px; }
.legend .swatch.dash { border-top-style: dashed; }
.legend .swatch.marker { width: 0; height: 12px; border-top: 0; border-left: 2px solid; margin: 0 6px 0 4px; }
svg.chart { display: block; font-size: 11px; fill: #3b4454; }
svg.chart .axlabel { font-size: 12px; fill: #1d2330; }
svg.chart .reflabel { font-size: 11px; fill: #555; }
svg.chart .evlabel { font-size: 11px; font-weight: 600; }
.tip { position: absolute; pointer-events: none; background: rgba(255,255,255,.95); border: 1px solid #bbb;
  border-radius: 4px; padding: 4px 7px; font-size: 12px; box-shadow: 0 1px 4px rgba(0,0,0,.15); z-index: 2; white-space: nowrap; }
.tip .head { font-weight: 600; }
.scroll { max-height: 420px; overflow: auto; background: #fff; border: 1px solid #dde1e8; border-radius: 6px; }
.scroll-x { overflow-x: auto; background: #fff; border: 1px solid #dde1e8; border-radius: 6px; }
table.logbook, table.layers { border-collapse: collapse; width: 100%; font-size: 13px; }
table.logbook th, table.layers th { position: sticky; top: 0; background: #f0f2f6; text-align: left; padding: 5px 8px; }
table.logbook td, table.layers td { border-top: 1px solid #eceff4; padding: 4px 8px; vertical-align: top; }
table.logbook td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.layers th.layer { position: static; background: #fff; font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: 500; font-size: 12px; white-space: nowrap; }
table.layers .last { font-size: 11px; color: #5a6475; }
.badnum { color: #d00000; }
.kind { padding: 1px 7px; border-radius: 8px; font-size: 12px; background: #eceff4; font-weight: 600; }
.k-skip { background: #fdebc8; } .k-quarantine { background: #f4dcea; } .k-rollback, .k-restart { background: #fbd5c6; }
.k-stop { background: #333; color: #fff; } .k-recovered { background: #d3efe4; }
.scroll-x + .scroll-x { margin-top: 10px; }
details.layer-hists { margin-top: 10px; } details.layer-hists summary { cursor: pointer; color: #3b4454; margin-bottom: 8px; }
.smalls { display: flex; flex-wrap: wrap; gap: 10px; }
.smalls .panel { width: 276px; }
.error { background: #fde0dc; color: #a61b0b; padding: 6px 10px; border-radius: 4px; margin: 6px 0; }
.problems { background: #fff0cc; border: 1px solid #e6cf8f; border-radius: 6px; padding: 8px 12px; margin: 10px 0; }
footer { margin-top: 30px; color: #7a8394; font-size: 12px; }
@media (max-width: 900px) { .cards, .grid2, .grid3 { grid-template-columns: 1fr; } }
"""
