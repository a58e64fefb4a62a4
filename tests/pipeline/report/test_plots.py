"""Figures: every PNG is written and well-formed, the per-variant figure is coloured by α, and
names of variants at nearly the same point share one label instead of printing over each
other."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from alphaprune.pipeline.report import figures, plots, speed

TEACHER = {"test_acc": 0.99, "val_acc": 0.98, "params": 1000}


def _history(n=6):
    alpha = [0.9, 0.9, 0.5, 0.5, 0.0, 0.0][:n]
    return pd.DataFrame(
        {
            "epoch": range(1, n + 1),
            "step": [0, 0, 1, 1, 2, 2][:n],
            "alpha": alpha,
            "train_loss": [1.0 - 0.1 * i for i in range(n)],
            "val_loss": [0.9] * n,
            "train_acc": [0.9 + 0.01 * i for i in range(n)],
            "val_acc": [0.95] * n,
        }
    )


def _steps():
    return pd.DataFrame(
        {"alpha": [0.9, 0.5, 0.0], "val_acc": [0.97, 0.96, 0.975], "val_loss": [0.2, 0.3, 0.25]}
    )


def _metrics(rows: dict[str, tuple[int, float]], runs=("t0-s0",)) -> pd.DataFrame:
    """name -> (student params, test acc), the same for every replicate in `runs`."""
    return pd.DataFrame(
        [
            {
                "student_params": p,
                "student_macs": 10 * p,
                "test_acc": a,
                "noisy_test_acc": a - 0.1,
                "teacher_params": 1000,
                "teacher_macs": 10_000,
                "test_size": 500,
            }
            for p, a in rows.values()
            for _ in runs
        ],
        index=pd.MultiIndex.from_product([list(rows), runs], names=["variant", "replicate"]),
    )


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("runs", [("t0-s0",), ("t0-s0", "t0-s1", "t1-s0")])
def test_all_figures_are_pngs(tmp_path, runs):
    metrics = _metrics({"a": (350, 0.98), "b": (340, 0.97)}, runs)
    keys = [(v, r) for v in "ab" for r in runs]
    paths = plots.all_figures(
        {k: _history() for k in keys},
        {k: _steps() for k in keys},
        metrics,
        TEACHER,
        tmp_path / "plots",
    )
    names = sorted(p.name for p in paths)
    assert names == [
        "accuracy_vs_alpha.png",
        "accuracy_vs_size.png",
        "final_accuracy.png",
        "training_a.png",
        "training_b.png",
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def _figure(monkeypatch, draw, *args):
    """The figure `draw` made (kept open), after it wrote its PNG."""
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: None)
    path = draw(*args)
    assert path.read_bytes()[:4] == b"\x89PNG"
    return plt.gcf()


def test_training_curves_colour_by_alpha(tmp_path, monkeypatch):
    fig = _figure(
        monkeypatch, plots.training_curves, "v", [_history()], TEACHER, tmp_path / "t.png"
    )
    colourbars = [ax for ax in fig.axes if ax.get_ylabel() == "α"]
    assert len(colourbars) == 1
    scatter = next(c for ax in fig.axes for c in ax.collections if c.get_array() is not None)
    assert sorted(set(scatter.get_array().tolist())) == [0.0, 0.5, 0.9]


def test_each_curve_ends_beside_its_one_shot_twin(tmp_path, monkeypatch):
    oneshot = [
        pd.DataFrame({"alpha": [0.0], "val_acc": [a], "val_loss": [0.3]}) for a in (0.94, 0.96)
    ]
    steps = {"anneal": [_steps()], "lone": [_steps()], "twin": oneshot}
    fig = _figure(
        monkeypatch,
        plots.accuracy_vs_alpha,
        steps,
        TEACHER,
        tmp_path / "a.png",
        {"anneal": "twin", "lone": None},
    )
    accuracy, loss = fig.axes
    curves = {line.get_label(): line for line in loss.get_lines()}
    assert set(curves) == {"anneal", "lone"}  # the one-shot run has no curve of its own
    diamonds = [line for line in accuracy.get_lines() if line.get_marker() == "D"]
    assert len(diamonds) == 1  # `lone` has no twin
    (diamond,) = diamonds
    assert list(diamond.get_xdata()) == [plots.TWIN_X] and -0.02 < plots.TWIN_X < 0  # by α = 0
    assert diamond.get_ydata()[0] == pytest.approx(0.95)  # the mean of the twin's replicates
    assert diamond.get_color() == curves["anneal"].get_color()
    legend = [t.get_text() for t in loss.get_legend().get_texts()]
    assert legend[-1] == "one-shot twin (α = 0 throughout)"


def test_without_twins_the_legend_names_no_diamond(tmp_path, monkeypatch):
    fig = _figure(
        monkeypatch, plots.accuracy_vs_alpha, {"a": [_steps()]}, TEACHER, tmp_path / "a.png"
    )
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["a", "teacher"]


def _labels(tmp_path, monkeypatch, rows) -> list[str]:
    fig = _figure(monkeypatch, plots.accuracy_vs_size, _metrics(rows), TEACHER, tmp_path / "s.png")
    return [t.get_text() for t in fig.axes[0].texts]


def test_final_accuracy_draws_every_replicate_and_an_interval(tmp_path, monkeypatch):
    metrics = _metrics({"a": (350, 0.98), "b": (340, 0.90)}, ("t0-s0", "t0-s1", "t0-s2"))
    metrics.loc[("a", "t0-s1"), "test_acc"] = 0.96
    fig = _figure(monkeypatch, plots.final_accuracy, metrics, TEACHER, tmp_path / "f.png")
    ax = fig.axes[0]
    dots = next(c for c in ax.collections if c.get_label() == "each replicate")
    assert len(dots.get_offsets()) == 6  # every replicate of both variants
    bars = [c for c in ax.containers if hasattr(c, "has_xerr") and c.has_xerr]
    assert bars, "the means carry interval error bars"


def test_close_points_share_one_label():
    # 320 and 349 are 3% of the axis (1000) apart; 700 is far away.
    fig, ax = plt.subplots()
    x = pd.Series({"x": 320, "y": 349, "z": 700, "w": 320})
    y = pd.Series({"x": 0.98, "y": 0.98, "z": 0.98, "w": 0.97})
    figures.label_points(ax, x, y, 1000)
    assert sorted(t.get_text() for t in ax.texts) == ["w", "x\ny", "z"]
    plt.close(fig)


def test_only_the_best_trade_offs_are_named_and_the_rest_keyed(tmp_path, monkeypatch):
    """On accuracy against size the front is smaller and more accurate: y is bigger than x at
    the same accuracy, w smaller than x but less accurate (still on the front), v beaten by x
    on both. 27 names printed over each other in make run's figure before."""
    labels = _labels(
        tmp_path,
        monkeypatch,
        {"x": (320, 0.98), "y": (349, 0.98), "z": (700, 0.99), "w": (300, 0.97), "v": (400, 0.9)},
    )
    assert sorted(labels) == ["w", "x", "z"]
    assert figures.front(pd.Series({"a": 1.0, "b": 2.0}), pd.Series({"a": 0.9, "b": 0.9})) == ["b"]


def _timed(metrics: pd.DataFrame) -> pd.DataFrame:
    """`metrics` with the latency stage's speedups (onnxruntime at both batches, eager)."""
    out = metrics.assign(macs_ratio=metrics["teacher_macs"] / metrics["student_macs"])
    return out.assign(
        ort_latency_speedup=1.2, ort_throughput_speedup=1.5, eager_latency_speedup=0.9
    )


def test_speedup_vs_macs_plots_each_runtime_and_labels_each_architecture_once(
    tmp_path, monkeypatch
):
    # a and b are one architecture (the same MACs), c another; d is not timed yet
    metrics = _timed(_metrics({"a": (350, 0.98), "b": (350, 0.97), "c": (200, 0.9), "d": (9, 1)}))
    metrics.loc["d", [k for k in metrics.columns if k.endswith("_speedup")]] = float("nan")
    fig = _figure(monkeypatch, speed.speedup_vs_macs, metrics, tmp_path / "s.png")
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "onnxruntime, latency batch" in legend and "PyTorch eager, latency batch" in legend
    assert not [label for label in legend if label.startswith("CUDA")]  # no CUDA timings here
    assert sorted(t.get_text() for t in ax.texts) == ["a, b", "c"]
    assert ax.get_xlim()[1] < 10  # nor does it stretch the axis
    onnx = next(c for c in ax.containers if c.get_label() == "onnxruntime, latency batch")
    xs = sorted(onnx.lines[0].get_xdata())  # d, not timed, is not drawn
    assert xs == pytest.approx([10_000 / 3500, 10_000 / 3500, 10_000 / 2000])


def test_replicates_sharing_one_timing_draw(tmp_path, monkeypatch):
    """Twins and seeds of one architecture share one timing: the mean of three equal floats
    can land an ulp above them (1.35 here), and matplotlib refused a negative error bar."""
    runs = ("t0-s0", "t0-s1", "t0-s2")
    metrics = _timed(_metrics({"a": (350, 0.98), "b": (200, 0.9)}, runs))
    metrics["ort_latency_speedup"] = 1.35
    assert pd.Series([1.35] * 3).groupby([0] * 3).mean().iloc[0] > 1.35  # the case
    for figure in (speed.speedup_vs_macs, speed.accuracy_vs_speedup):
        args = (
            (metrics, tmp_path / "f.png")
            if figure is speed.speedup_vs_macs
            else (metrics, TEACHER, tmp_path / "f.png")
        )
        _figure(monkeypatch, figure, *args)
    below, above = figures.bars(pd.Series([1.3500000000000003]), 1.35, 1.35)
    assert below[0] > 0 and above[0] == 0


def test_all_figures_add_the_speedup_figure_once_students_are_timed(tmp_path):
    metrics = _timed(_metrics({"a": (350, 0.98)}))
    keys = [("a", "t0-s0")]
    paths = plots.all_figures(
        {k: _history() for k in keys}, {k: _steps() for k in keys}, metrics, TEACHER, tmp_path
    )
    assert {"speedup_vs_macs.png", "accuracy_vs_speedup.png"} <= {p.name for p in paths}


def test_accuracy_vs_speedup_puts_each_timed_variant_against_the_teacher(tmp_path, monkeypatch):
    runs = ("t0-s0", "t0-s1", "t0-s2")
    metrics = _timed(_metrics({"a": (350, 0.98), "b": (200, 0.9), "d": (9, 1)}, runs))
    metrics.loc["b", "ort_latency_speedup"] = [1.9, 2.0, 2.1]
    metrics.loc["d", [k for k in metrics.columns if k.endswith("_speedup")]] = float("nan")
    fig = _figure(monkeypatch, speed.accuracy_vs_speedup, metrics, TEACHER, tmp_path / "a.png")
    latency, throughput = fig.axes
    assert "latency batch" in latency.get_xlabel() and "throughput" in throughput.get_xlabel()
    points = next(c for c in latency.containers if hasattr(c, "lines"))
    xs, ys = points.lines[0].get_xdata(), points.lines[0].get_ydata()
    assert sorted(zip(xs, ys, strict=True)) == [
        (1.2, pytest.approx(0.98)),
        (2.0, pytest.approx(0.9)),
    ]
    assert sorted(t.get_text() for t in latency.texts) == ["a", "b"]  # d is not timed
    star = next(c for c in latency.collections if c.get_label() == "teacher")
    assert star.get_offsets().tolist() == [[1.0, 0.99]]


def test_variants_at_one_speed_are_named_once_by_the_most_accurate(tmp_path, monkeypatch):
    """Twins and recipes that leave the same layers share one timing: one column of points,
    one name (its most accurate variant) and how many stand below it."""
    metrics = _timed(_metrics({"a": (350, 0.98), "b": (350, 0.97), "c": (350, 0.96)}))
    metrics.loc["c", ["ort_latency_speedup", "ort_throughput_speedup"]] = 2.0
    fig = _figure(monkeypatch, speed.accuracy_vs_speedup, metrics, TEACHER, tmp_path / "a.png")
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["a (+1)", "c"]


def _targeted(metrics: pd.DataFrame, figures: dict) -> pd.DataFrame:
    """`metrics` with the latency stage's record of latency targets: variant -> (ranking, asked,
    measured per replicate); the other variants targeted none."""
    out = _timed(metrics)
    variants = out.index.get_level_values("variant")
    out["target_ranking"] = [figures[v][0] if v in figures else None for v in variants]
    out["target_speedup"] = [figures[v][1] if v in figures else None for v in variants]
    out["target_batch"] = [64 if v in figures else None for v in variants]
    out["latency_batch"], out["throughput_batch"] = 1, 64  # as the latency stage records
    measured = {v: iter(f[2]) for v, f in figures.items()}
    out["target_measured_speedup"] = [next(measured[v]) if v in figures else None for v in variants]
    out["target_measured_range"] = [
        [s - 0.05, s + 0.05] if pd.notna(s) else None for s in out["target_measured_speedup"]
    ]
    return out


def test_pareto_draws_one_front_per_ranking_at_the_measured_speeds(tmp_path, monkeypatch):
    runs = ("t0-s0", "t0-s1")
    rows = {"k15": (300, 0.95), "g15": (200, 0.93), "k18": (250, 0.94), "g18": (150, 0.9)}
    rows["plain"] = (350, 0.98)  # a params target: not on this figure
    figures = {
        "k15": ("knapsack", 1.5, [1.48, 1.52]),
        "g15": ("global", 1.5, [1.55, 1.55]),
        "k18": ("knapsack", 1.8, [1.8, 1.84]),
        "g18": ("global", 1.8, [1.9, 1.9]),
    }
    metrics = _targeted(_metrics(rows, runs), figures)
    fig = _figure(monkeypatch, speed.pareto, metrics, TEACHER, tmp_path / "p.png")
    ax = fig.axes[0]
    fronts = {c.get_label(): c for c in ax.containers if hasattr(c, "lines")}
    # the params-target student, timed at batch 64 too: a grey square, named, at its speed
    other = fronts["other students (no latency target)"].lines[0]
    assert list(other.get_xdata()) == pytest.approx([1.5])  # _timed's throughput speedup
    assert list(other.get_ydata()) == pytest.approx([0.98])
    del fronts["other students (no latency target)"]
    knapsack = fronts[speed.RANKINGS["knapsack"]].lines[0]
    assert list(knapsack.get_xdata()) == pytest.approx([1.5, 1.82])  # sorted by speed
    assert list(knapsack.get_ydata()) == pytest.approx([0.95, 0.94])
    assert list(fronts[speed.RANKINGS["global"]].lines[0].get_xdata()) == pytest.approx([1.55, 1.9])
    assert sorted(t.get_text() for t in ax.texts) == ["g15", "g18", "k15", "k18", "plain"]
    assert sorted(line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":") == [
        1.5,
        1.8,
    ]
    assert "batch 64" in ax.get_xlabel()


def test_pareto_draws_students_that_drop_blocks_as_a_front_of_their_own(tmp_path, monkeypatch):
    """A blocks+channels student ranks its channels as a channel student may: it is its own
    front, not a point on the channel knapsack's line."""
    rows = {"k2": (300, 0.95), "bc2": (250, 0.97), "bc3": (200, 0.96)}
    figures = {
        "k2": ("knapsack_summed", 2.0, [2.0]),
        "bc2": ("knapsack_summed", 2.0, [1.9]),
        "bc3": ("knapsack_summed", 3.0, [2.9]),
    }
    metrics = _targeted(_metrics(rows), figures)
    metrics["target_kind"] = [
        "channels" if v == "k2" else "blocks+channels" for v in metrics.index.get_level_values(0)
    ]
    fig = _figure(monkeypatch, speed.pareto, metrics, TEACHER, tmp_path / "p.png")
    fronts = {c.get_label(): c for c in fig.axes[0].containers if hasattr(c, "lines")}
    both = "alphaprune: whole blocks and channels, the channels by knapsack_summed"
    assert list(fronts[both].lines[0].get_xdata()) == pytest.approx([1.9, 2.9])
    assert list(fronts[speed.RANKINGS["knapsack_summed"]].lines[0].get_xdata()) == [2.0]


def test_all_figures_add_the_pareto_figure_for_latency_targets(tmp_path):
    metrics = _targeted(_metrics({"a": (350, 0.98)}), {"a": ("knapsack", 1.5, [1.5])})
    keys = [("a", "t0-s0")]
    paths = plots.all_figures(
        {k: _history() for k in keys}, {k: _steps() for k in keys}, metrics, TEACHER, tmp_path
    )
    assert "pareto.png" in {p.name for p in paths}


def test_pareto_joins_only_students_trained_for_as_many_epochs(tmp_path, monkeypatch):
    """The same targets fine-tuned 4 and 8 epochs are two fronts per ranking, not one line
    zigzagging between budgets."""
    rows = {"k15": (300, 0.95), "k18": (250, 0.94), "k18_8": (250, 0.96)}
    figures = {
        "k15": ("knapsack", 1.5, [1.5]),
        "k18": ("knapsack", 1.8, [1.8]),
        "k18_8": ("knapsack", 1.8, [1.8]),
    }
    metrics = _targeted(_metrics(rows), figures)
    metrics["epochs"] = [8 if v == "k18_8" else 4 for v in metrics.index.get_level_values(0)]
    fig = _figure(monkeypatch, speed.pareto, metrics, TEACHER, tmp_path / "p.png")
    fronts = {c.get_label(): c for c in fig.axes[0].containers if hasattr(c, "lines")}
    four, eight = (fronts[f"{speed.RANKINGS['knapsack']} ({n} epochs)"] for n in (4, 8))
    assert list(four.lines[0].get_xdata()) == pytest.approx([1.5, 1.8])
    assert list(eight.lines[0].get_xdata()) == pytest.approx([1.8])
