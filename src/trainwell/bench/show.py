"""``bench show``: the benchmark's table and verdicts in the terminal, or as one JSON object
``{"runs": [{problem, algorithm, protocol, seed, metric, value, value_split, test_metric,
test_value, test_missing, time_to_target_s, reached, state, ...}], "scores": {protocol:
{...}}, "table": [...]}``. A run's ``value`` is on validation, its ``test_value`` on the
test split (final runs of deepobs, budget and oneshot); a table line's ``mean`` is on its
``split`` (test for deepobs and budget: the setting chosen on validation, reported on
test)."""

from __future__ import annotations

from typing import Any


def to_json(runs: list[dict[str, Any]], table: dict[str, Any]) -> dict[str, Any]:
    return {"protocol": table["protocol"], "runs": runs, "scores": table["scores"],
            "table": [{k: v for k, v in line.items() if k != "values"} for line in table["lines"]]}


def split_header(line: dict[str, Any]) -> str:
    """What a table's numbers are: the test metric of the setting chosen on validation, or
    the final validation metric."""
    metric = line["metric"]
    if line.get("split") == "test":
        return (f"{line.get('reported_metric') or metric} on the test split, of the setting chosen on "
                f"validation ({metric})")
    return f"final {metric} on the validation split"


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def render_algoperf(runs: list[dict[str, Any]], table: dict[str, Any]) -> str:
    scores = table["scores"]["algoperf"]
    lines = [f"protocol algoperf: {len(runs)} runs; time = training seconds to the validation target, the "
             "median over studies of each study's fastest run"]
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for line in table["lines"]:
        by_problem.setdefault(line["problem"], []).append(line)
    for problem, ls in by_problem.items():
        lines += ["", f"{problem}: target {ls[0]['metric']} {ls[0]['target']:.4g}"]
        rows = [["algorithm", "time to target (s)", "x fastest [95%]", "runs at target", "missed"]]
        for x in sorted(ls, key=lambda x: x["time_to_target_s"] if x["time_to_target_s"] is not None else 1e300):
            missed = ", ".join(f"{k} {v}" for k, v in sorted(x["missed"].items())) or "-"
            ci = x.get("ratio_to_fastest_ci")
            rows.append([x["algorithm"], _num(x["time_to_target_s"]) if x["time_to_target_s"] is not None
                         else "inf", f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-",
                         f"{x['reached']} of {x['runs']}", missed])
        lines += _columns(rows)
    lines += ["", f"score (performance profile, r_max = {scores['r_max']:g}; 1 = fastest everywhere) and "
                  f"speed-up over {scores['reference']} (geometric mean over problems both reached):"]
    rows = [["algorithm", "score", "speed-up"]]
    for a, v in sorted(scores["score"].items(), key=lambda kv: -kv[1]):
        rows.append([a, f"{v:.4f}", _num(scores["speedup"].get(a))])
    return "\n".join(lines + _columns(rows))


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def render_text(runs: list[dict[str, Any]], table: dict[str, Any]) -> str:
    protocol = table["protocol"]
    if protocol == "algoperf":
        return render_algoperf(runs, table)
    scores = table["scores"][protocol]
    lines = [f"protocol {protocol}: {len(runs)} runs"]
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for line in table["lines"]:
        by_problem.setdefault(line["problem"], []).append(line)
    for problem, ls in by_problem.items():
        verdicts = scores["problems"].get(problem, {}).get("algorithms", {})
        head = ls[0]
        test = head.get("split") == "test"
        lines += ["", f"{problem}: {split_header(head)}; {'higher' if head['higher_is_better'] else 'lower'} "
                      "is better; mean over seeds [95% bootstrap interval]"]
        rows = [[*(["algorithm", "schedule", "test mean", "std", "interval", "seeds", "val mean"] if test else
                   ["algorithm", "schedule", "val mean", "std", "interval", "seeds"]),
                 "infeasible", "interventions", "verdict"] + (["lr", "stable lr"] if protocol == "deepobs" else [])]
        ls = sorted(ls, key=lambda x: (x["mean"] is None, -(x["mean"] or 0) if head["higher_is_better"]
                                       else (x["mean"] or 0)))
        for x in ls:
            ci = x["ci"]
            v = verdicts.get(x["algorithm"], {})
            rows.append([x["algorithm"], x["schedule"], _num(x["mean"]), _num(x["std"]),
                         f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "-", f"{x['n']} of {x['runs']}",
                         *([_num(x.get("val_mean"))] if test else []), str(x["infeasible"]), str(x["interventions"]),
                         v.get("verdict", "-") if v.get("schedule") == x["schedule"] else "-"]
                        + ([_num(x.get("lr")), _num(x.get("stable_lr_fraction"))] if protocol == "deepobs" else []))
        lines += _columns(rows)
    wins = scores.get("wins", {})
    if wins:
        lines += ["", "problems won or tied (overlapping intervals are ties): "
                  + ", ".join(f"{a} {n}" for a, n in sorted(wins.items(), key=lambda kv: -kv[1]))]
    return "\n".join(lines)
