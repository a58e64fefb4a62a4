"""ONNX students: every branch kind exports, folds its BatchNorms and runs in onnxruntime as in
PyTorch, on the small CNN, ResNet-20 and torchvision's MobileNetV2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from alphaprune import blend
from alphaprune.budget.allocator import allocate
from alphaprune.models import build_model
from alphaprune.pipeline.cli import main
from alphaprune.pipeline.deploy import export
from alphaprune.student import make_student

pytest.importorskip("onnxruntime", reason="onnxruntime is a dependency of the pipeline")

MODELS = {"cnn": (1, 8, 8), "resnet20": (3, 32, 32), "tv:mobilenet_v2": (3, 32, 32)}
KINDS = ["pointwise", "lowrank", "dwsep", "sparse"]


def _student(name: str, kind: str | None):
    torch.manual_seed(0)
    c, h, _ = MODELS[name]
    model = build_model(name, num_classes=10, in_channels=c, image_size=h)
    model.train()(torch.randn(64, *MODELS[name]))  # BatchNorm statistics that are not (0, 1)
    model.eval()
    if kind is None:
        return model
    x = torch.randn(2, *MODELS[name])
    student = make_student(model, allocate(model, kind, 0.5, x), "pretrained")
    blend.set_alpha(student, 0.0)
    return blend.collapse(student).eval()


@pytest.mark.slow(seconds=16)
@pytest.mark.parametrize("kind", [None, *KINDS], ids=lambda k: k or "teacher")
@pytest.mark.parametrize("name", list(MODELS))
def test_export_folds_batchnorm_and_onnxruntime_matches_pytorch(tmp_path, name, kind):
    model = _student(name, kind)
    path = tmp_path / "m.onnx"
    record = export.export_onnx(model, MODELS[name], path)
    # Every BatchNorm follows a convolution here, so all of them fold (sparse ones too: they
    # are exported dense); the folded graph must still compute the unfolded model.
    assert record["onnx_batchnorm_nodes"] == 0
    assert record["onnx_opset"] == export.OPSET and record["onnx_input_shape"][0] == "batch"
    sess = export.session(path)
    for batch in (1, 5):  # the batch dimension is dynamic
        x = torch.randn(batch, *MODELS[name])
        ours = model(x).detach().numpy()
        theirs = sess.run(None, {"input": x.numpy()})[0]
        np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)
        assert (theirs.argmax(1) == ours.argmax(1)).all()


def test_a_sparse_student_exports_dense_with_its_zeros(tmp_path):
    model = _student("cnn", "sparse")
    dense = export.deployable(model)
    assert not any(hasattr(m, "weight_mask") for m in dense.modules())
    x = torch.randn(4, *MODELS["cnn"])
    torch.testing.assert_close(dense(x), model(x), rtol=0, atol=0)


def test_the_export_command_checks_the_file_on_the_test_split(tmp_path, prepared_path, teacher_dir):
    out, record = tmp_path / "teacher.onnx", tmp_path / "export.json"
    args = ["export", "--model", str(teacher_dir / "model.pt"), "--out", str(out)]
    assert main([*args, "--data", str(prepared_path), "--json", str(record)]) == 0
    got = json.loads(record.read_text())
    assert out.exists() and got["onnx_batchnorm_nodes"] == 0
    assert got["onnx_top1_agreement"] == 1.0 and got["onnx_max_abs_logit_diff"] < 1e-4


def test_an_export_below_the_agreement_bar_fails_and_leaves_nothing(
    tmp_path, prepared_path, teacher_dir, capsys
):
    out = tmp_path / "teacher.onnx"
    args = ["export", "--model", str(teacher_dir / "model.pt"), "--out", str(out)]
    # agreement is 1.0 at most: this bar fails a correct file, as a broken graph would fail 0.999
    assert main([*args, "--data", str(prepared_path), "--min-agreement", "1.01"]) == 2
    assert "below --min-agreement 1.01" in capsys.readouterr().err and not out.exists()


def test_the_torch_export_program_runs_in_pytorch_without_this_package(tmp_path):
    """Every kind's student, each loaded in one fresh process (a process each cost 2 s of
    imports apiece, for nothing the check needs)."""
    x = torch.randn(3, *MODELS["cnn"])
    for kind in KINDS:
        model = _student("cnn", kind)
        export.export_program(model, MODELS["cnn"], tmp_path / f"{kind}.pt2")
        torch.save({"x": x, "y": model(x).detach()}, tmp_path / f"{kind}.io.pt")
    code = (  # alphaprune cannot be imported in this process
        "import sys; sys.modules['alphaprune'] = None\n"
        "import torch\n"
        f"for kind in {list(KINDS)!r}:\n"
        f"    io = torch.load({str(tmp_path)!r} + f'/{{kind}}.io.pt')\n"
        f"    m = torch.export.load({str(tmp_path)!r} + f'/{{kind}}.pt2').module()\n"
        "    torch.testing.assert_close(m(io['x']), io['y'], rtol=1e-5, atol=1e-5, msg=kind)\n"
        "    assert m(io['x'][:1]).shape == (1, 10), kind\n"  # any batch
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_channel_student_from_the_prune_stage_is_narrow_and_exports_the_teachers_graph(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    from alphaprune.branches.base import count_params
    from alphaprune.loading import load_model
    from alphaprune.pipeline.stages.prune import prune

    recipe = {"branch": "channels", "init": "lsq", "trainable": "student", "round_to": 4}
    prune(tiny_params(ch=recipe), "ch", prepared_path, teacher_dir / "model.pt", tmp_path)
    student, saved = load_model(tmp_path / "student.pt")
    teacher, _ = load_model(teacher_dir / "model.pt")
    assert saved["layers"] == [] and saved["narrowing"]  # no branches: narrowed layers
    assert count_params(student) == saved["plan"]["student_params"] < count_params(teacher)
    for root, removed in saved["plan"]["removed"].items():
        kept = student.get_submodule(root).out_channels
        assert kept == teacher.get_submodule(root).out_channels - len(removed)
        assert kept % 4 == 0
    records = []
    for name, path in (("teacher", teacher_dir / "model.pt"), ("student", tmp_path / "student.pt")):
        out, record = tmp_path / f"{name}.onnx", tmp_path / f"{name}.json"
        args = ["export", "--model", str(path), "--out", str(out), "--data", str(prepared_path)]
        assert main([*args, "--json", str(record)]) == 0
        records.append(json.loads(record.read_text()))
    theirs, ours = records
    assert ours["onnx_nodes"] == theirs["onnx_nodes"]  # the same graph, narrower
    assert ours["onnx_top1_agreement"] == 1.0 and ours["onnx_params"] < theirs["onnx_params"]
