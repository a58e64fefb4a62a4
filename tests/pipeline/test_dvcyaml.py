"""dvc.yaml lists each stage's code, and `make dvc-code` rewrites only those entries."""

from __future__ import annotations

import re
from pathlib import Path

from alphaprune.pipeline.dvcyaml import expected_code_deps, listed_code_deps, main, sync_dvc_yaml

REPO = Path(__file__).resolve().parents[2]


def test_dvc_yaml_lists_each_stages_code(monkeypatch):
    monkeypatch.chdir(REPO)
    assert listed_code_deps(REPO / "dvc.yaml") == expected_code_deps(), (
        "dvc.yaml is out of date: run `make dvc-code`"
    )
    assert main(["--check", "dvc.yaml"]) == 0


def test_sync_rewrites_only_the_code_deps(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the code is found under ./src
    stale = tmp_path / "dvc.yaml"
    text = (REPO / "dvc.yaml").read_text()
    text = text.replace("      - src/alphaprune/pipeline/data.py\n", "", 1)  # prepare lost a file
    # pretrain gained a file, at its own indentation (a foreach stage nests under do:)
    text = re.sub(
        r"^( +)- src/alphaprune/fit.py\n",
        r"\g<0>\1- src/alphaprune/old.py\n",
        text,
        count=1,
        flags=re.M,
    )
    stale.write_text(text)
    assert main(["--check", str(stale)]) == 1
    err = capsys.readouterr().err
    assert "prepare, pretrain" in err and "make dvc-code" in err  # and the fix
    assert sync_dvc_yaml(stale) is True
    assert stale.read_text() == (REPO / "dvc.yaml").read_text()  # comments and all
    assert sync_dvc_yaml(stale) is False
