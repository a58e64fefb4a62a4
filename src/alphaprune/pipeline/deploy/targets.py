"""What a student of `prune.target: latency` asked for, what its table predicted and what the
latency stage measured: the record the latency stage adds to its `latency.json` (its own
module: the table stage does not import it, so editing it re-measures no table)."""

from __future__ import annotations

from collections.abc import Mapping


def latency_target(recipe: Mapping, timed: Mapping) -> dict:
    """For a student planned to a latency target (its model file's `recipe`: the plan, and the
    prune settings it was made with): its kind (`channels`, or `blocks+channels`, whose plan
    drops blocks too) and how its channels were ranked; the speedup asked,
    1 / (1 - amount); the one its latency table predicted; and the one `timed` (a
    `measure_grid` row) measured at the table's batch in onnxruntime, with its spread, where
    that batch and thread count were timed. {} for a student of another target."""
    plan = recipe.get("plan", {})
    planned = plan.get("latency") if plan.get("target") == "latency" else None
    if not planned:
        return {}
    # a plan from before plans recorded their ranking was the knapsack's, then the default
    ranking = planned.get("ranking") or recipe.get("prune", {}).get("ranking") or "knapsack"
    out = {
        "target_kind": plan.get("kind", "channels"),
        "target_ranking": ranking,
        "target_batch": planned["batch"],
        "target_speedup": 1 / (1 - plan["amount"]),
        "predicted_speedup": planned["teacher_ms"] / planned["student_ms"],
    }
    kind = {timed["latency_batch"]: "latency", timed["throughput_batch"]: "throughput"}.get(
        planned["batch"]
    )
    if kind and planned["threads"] == timed["latency_threads"]:
        out["target_measured_speedup"] = timed[f"ort_{kind}_speedup"]
        out["target_measured_range"] = timed[f"ort_{kind}_speedup_range"]
    table_cpu = planned.get("machine_cpu")
    if table_cpu is not None and table_cpu != timed.get("machine_cpu"):
        out["target_table_cpu"] = table_cpu  # measured on another CPU than this stage's
    return out
