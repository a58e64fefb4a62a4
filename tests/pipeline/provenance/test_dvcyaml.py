"""dvc.yaml lists each stage's code and params keys, and `make dvc-code` rewrites only those."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from alphaprune.pipeline.provenance.dvcyaml import (
    expected_code_deps,
    expected_params,
    listed_code_deps,
    listed_params,
    main,
    sync_dvc_yaml,
)

REPO = Path(__file__).resolve().parents[3]


def test_dvc_yaml_lists_each_stages_code(monkeypatch):
    monkeypatch.chdir(REPO)
    assert listed_code_deps(REPO / "dvc.yaml") == expected_code_deps(), (
        "dvc.yaml is out of date: run `make dvc-code`"
    )
    assert main(["--check", "dvc.yaml"]) == 0


def test_sync_rewrites_only_the_code_deps(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    stale = tmp_path / "dvc.yaml"
    code, stages = (REPO / "dvc.yaml").read_text().split("\n  prepare:\n")  # not the code stage
    text = stages.replace("      - results/code/prepare.md5\n", "", 1)  # prepare lost its manifest
    # pretrain lists source files, as dvc.yaml did before the manifests (at its own indentation:
    # a foreach stage nests under do:)
    text = re.sub(
        r"^( +)- results/code/pretrain.md5\n",
        r"\1- src/alphaprune/fit.py\n\1- src/alphaprune/old.py\n",
        text,
        count=1,
        flags=re.M,
    )
    stale.write_text(f"{code}\n  prepare:\n{text}")
    assert main(["--check", str(stale)]) == 1
    err = capsys.readouterr().err
    assert "prepare, pretrain" in err and "make dvc-code" in err  # and the fix
    assert sync_dvc_yaml(stale) is True
    assert stale.read_text() == (REPO / "dvc.yaml").read_text()  # comments and all
    assert sync_dvc_yaml(stale) is False


def test_the_code_stage_writes_every_stages_manifest(tmp_path, capsys):
    """The manifests the stages depend on are the `code` stage's outputs (so DVC reruns it
    first), and it depends on the whole package; a stage added without its manifest there is
    named by the check and written by `make dvc-code`."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    code = stages["code"]
    assert code["deps"] == ["src/alphaprune"]
    assert code["outs"] == [dep for deps in expected_code_deps().values() for dep in deps]
    assert code["cmd"].startswith("alphaprune code ")
    stale = tmp_path / "dvc.yaml"
    text = (REPO / "dvc.yaml").read_text()
    stale.write_text(text.replace("      - results/code/report.md5\n", "", 1))  # the code stage's
    assert main(["--check", str(stale)]) == 1
    assert "the outputs (the manifests) of code are out of date" in capsys.readouterr().err
    assert sync_dvc_yaml(stale) is True
    assert stale.read_text() == text


def test_sync_writes_each_stages_params_from_the_code(tmp_path, monkeypatch, capsys):
    """The params keys a stage depends on are one list in the code (`records.STAGE_PARAMS`),
    which the Snakefile and the records read too; dvc.yaml's `params:` are written from it."""
    monkeypatch.chdir(REPO)
    assert listed_params(REPO / "dvc.yaml") == expected_params()
    stale = tmp_path / "dvc.yaml"
    text = (REPO / "dvc.yaml").read_text()
    stale.write_text(text.replace("        - runtime.compile\n", "", 1))  # pretrain lost a key
    assert main(["--check", str(stale)]) == 1
    assert "the params of pretrain are out of date" in capsys.readouterr().err
    assert sync_dvc_yaml(stale) is True
    assert stale.read_text() == text
