"""The latency stage's record of a latency target: asked, predicted, measured."""

from __future__ import annotations

from alphaprune.pipeline.deploy.targets import latency_target


def test_a_latency_targets_ask_prediction_and_measurement_are_recorded():
    """The latency stage adds, for a student planned to a latency target, the speedup asked,
    the table's prediction and the one it measured at the table's batch and threads."""
    timed = {"latency_batch": 1, "throughput_batch": 64, "latency_threads": 1}
    timed |= {"ort_latency_speedup": 1.2, "ort_latency_speedup_range": [1.1, 1.3]}
    timed |= {"ort_throughput_speedup": 1.9, "ort_throughput_speedup_range": [1.8, 2.0]}
    planned = {"batch": 64, "threads": 1, "teacher_ms": 10.0, "student_ms": 4.0}
    plan = {"target": "latency", "amount": 0.5, "latency": {**planned, "ranking": "global"}}
    assert latency_target({"plan": plan}, timed) == {
        "target_kind": "channels",  # a plan from before plans recorded their kind: channels
        "target_ranking": "global",
        "target_batch": 64,
        "target_speedup": 2.0,
        "predicted_speedup": 2.5,
        "target_measured_speedup": 1.9,
        "target_measured_range": [1.8, 2.0],
    }
    at_one = {**plan, "latency": {**planned, "batch": 1}}
    assert latency_target({"plan": at_one}, timed)["target_measured_speedup"] == 1.2
    other_threads = {**plan, "latency": {**planned, "threads": 4}}
    measured = latency_target({"plan": other_threads}, timed)
    assert "target_measured_speedup" not in measured  # not what this stage timed
    # a plan that does not record its ranking: the prune settings it was made with say
    unrecorded = {"plan": {**plan, "latency": planned}, "prune": {"ranking": None}}
    assert latency_target(unrecorded, timed)["target_ranking"] == "knapsack"
    unrecorded["prune"]["ranking"] = "global"
    assert latency_target(unrecorded, timed)["target_ranking"] == "global"
    both = {"plan": {**plan, "kind": "blocks+channels"}}
    assert latency_target(both, timed)["target_kind"] == "blocks+channels"
    params_target = {"plan": {"target": "params", "amount": 0.5}}
    assert latency_target(params_target, timed) == {}


def test_a_table_measured_on_another_cpu_is_named():
    timed = {"latency_batch": 1, "throughput_batch": 64, "latency_threads": 1}
    timed |= {"ort_throughput_speedup": 1.9, "ort_throughput_speedup_range": [1.8, 2.0]}
    timed["machine_cpu"] = "CPU B"
    planned = {"batch": 64, "threads": 1, "teacher_ms": 10.0, "student_ms": 4.0}
    plan = {"target": "latency", "amount": 0.5}
    elsewhere = {"plan": {**plan, "latency": {**planned, "machine_cpu": "CPU A"}}}
    assert latency_target(elsewhere, timed)["target_table_cpu"] == "CPU A"
    here = {"plan": {**plan, "latency": {**planned, "machine_cpu": "CPU B"}}}
    assert "target_table_cpu" not in latency_target(here, timed)
