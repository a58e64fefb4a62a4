"""The pipeline as a user runs it: Snakemake and DVC see the same stages, commands and outputs;
a tiny configuration runs end to end in both; editing one variant (or the teacher) selects
exactly what depends on it. Each test works in a temporary copy of the project."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import (
    BIN,
    ENV,
    REPO,
    TINY,
    edit_params,
    make_project,
    peak_threads,
    run,
    timed_jobs_env,
)

from alphaprune.pipeline.provenance.codedeps import STAGES

pytestmark = pytest.mark.slow(seconds=130)  # the module's functions, on a 2-core machine

# TINY has one replicate, teacher 0 and seed 0: its folder under each variant's, and the end
# of each prune and evaluate job's name (DVC's matrix names them <variant>-<teacher>-<seed>).
RUN, JOB = "t0-s0", "0-0"
# The stages of every run (variant x replicate), and each stage's jobs. The latency stage is one
# job for the grid (each architecture timed once); plots and report are one each.
RUN_STAGES = ("prune", "evaluate", "export")
GRID = {"latency", "plots", "report"}


def jobs(*stages: str) -> set[str]:
    return {f"{stage}@{v}-{JOB}" for v in TINY["variants"] for stage in stages}


def of(expected: set[str], variants) -> set[str]:
    """`expected` for a project whose grid has only `variants`: their jobs, and the others."""
    return {j for j in expected if "-" not in j or j.split("@")[1][: -len(JOB) - 1] in variants}


# The `dvc repro` project's grid: two variants are enough for what DVC is tested on (the
# Snakemake project's four exercise scheduling, a channel student narrowed mid-run and a
# sparse one exported dense); DVC runs its stages one at a time, each a few seconds. It
# measures no latency table (latency.table unset: the table stage writes that it did not).
DVC_GRID = {**TINY, "variants": {v: TINY["variants"][v] for v in ("a", "b-2")}}
# The Snakemake project's grid measures a table (briefly), and its channel student `c` plans
# from it: a quarter of the teacher's time at the throughput batch, removed.
SMK_TABLE = {"seconds": 0.05, "rounds": 1, "widths": 3}
SMK_GRID = {
    **TINY,
    "latency": {**TINY["latency"], "table": SMK_TABLE},
    "variants": {**TINY["variants"], "c": {**TINY["variants"]["c"], "target": "latency"}},
}
SMK_GRID["variants"]["c"]["amount"] = 0.25


# What must rerun after an edit of variant b-2, of the teacher, and of the raw data.
AFTER_B2 = {f"{stage}@b-2-{JOB}" for stage in RUN_STAGES} | GRID
ALL_VARIANTS = jobs(*RUN_STAGES)
AFTER_TEACHER = {"pretrain@0", "export_teacher@0"} | GRID | ALL_VARIANTS
# the data's card is what the latency table reads (the model's input shape and classes)
AFTER_RAW_DATA = {"prepare", "table"} | AFTER_TEACHER
# An edit of a source file reruns the stages that import it, and what follows them.
AFTER_CODE_EDIT = {
    "src/alphaprune/pipeline/report/plots.py": {"plots", "report"},
    "src/alphaprune/pipeline/report/markdown.py": {"report"},
    "src/alphaprune/fit.py": AFTER_TEACHER,  # the fit loop: teacher, prunes and downstream
    # the ONNX export: every export (the teacher's too), and the timings of the files it makes
    # The table exports and times its models as the latency stage does: an edit of either
    # measures it again, and a table measured again reruns every prune (the Snakemake
    # project's); for the DVC project's unmeasured table DVC's dry run lists the same, though
    # its bytes then do not change and no prune reruns (test_an_unmeasured_table_reruns_no_prune)
    "src/alphaprune/pipeline/deploy/export.py": jobs(*RUN_STAGES)
    | {"export_teacher@0", "table"}
    | GRID,
    "src/alphaprune/pipeline/deploy/latency.py": jobs(*RUN_STAGES) | {"table"} | GRID,
    # a branch kind (or a new one, registered in branches/kinds.py): every stage that builds or
    # reads a student, and the teacher's export, which reads model files the same way; never
    # the teacher itself (the table reads the channel groups, whose module registers the kinds)
    "src/alphaprune/branches/lowrank.py": jobs(*RUN_STAGES) | {"export_teacher@0", "table"} | GRID,
}
# A params edit that changes no student reruns no export. The latency stage depends on the
# results folders whole (DVC cannot list each run's files for one stage), so an evaluation
# rerun reruns it too, in both tools alike.
AFTER_PARAMS_EDIT = {
    "eval.noise_std": (("eval", "noise_std", 0.3), jobs("evaluate") | GRID),
    "latency.rounds": (("latency", "rounds", 2), GRID),
    # how a run is spread over processes changes no result: nothing reruns; the precision the
    # runs train in does: the teacher and everything after it
    "runtime.processes": (("runtime", "processes", 2), set()),
    "runtime.precision": (("runtime", "precision", "float64"), AFTER_TEACHER),
    # a table measured again (or for the first time) reruns every prune in both tools: DVC's
    # matrix cannot name a dependency for some variants only (README)
    "latency.table": (
        ("latency", "table", {**SMK_TABLE, "rounds": 2}),
        {"table"} | ALL_VARIANTS | GRID,
    ),
}


# ------------------------------------------------------------------------------ the two views
def _name(rule: str, outputs: set[str]) -> str:
    """DVC's stage name for a Snakemake job, from its output paths: pretrain@<teacher> (foreach)
    and prune@<variant>-<teacher>-<seed> (matrix)."""
    patterns = (r"results/variants/([^/]+)/t(\d+)-s(\d+)/", r"results/teacher/t(\d+)/")
    for pattern in patterns:
        found = {m.groups() for o in outputs if (m := re.match(pattern, o))}
        if found:
            return f"{rule}@{'-'.join(found.pop())}"
    return rule


def _dry_run_blocks(root: Path, *args: str) -> list[dict]:
    """Snakemake's planned jobs: rule, wildcards, outputs and shell command of each."""
    out = run([BIN / "snakemake", "-n", "-p", *args], root).stdout
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not m:
            continue
        outputs, cmd, wildcards = (
            re.search(rf"^\s*{key}:\s*(.*)$", block, re.M)
            for key in ("output", "Shell command", "wildcards")
        )
        values = dict(w.split("=", 1) for w in wildcards.group(1).split(", ")) if wildcards else {}
        jobs.append(
            {
                "rule": m.group(1),
                # DVC's name for the job after the @: <teacher>, or <variant>-<teacher>-<seed>
                "variant": "-".join(
                    values[k] for k in ("variant", "teacher", "seed") if k in values
                )
                or None,
                "outputs": set(outputs.group(1).split(", ")) if outputs else set(),
                "cmd": cmd.group(1) if cmd else "",
            }
        )
    return jobs


def snakemake_jobs(root: Path) -> dict[str, tuple[str, set[str]]]:
    """job name -> (command, outputs), from a forced dry run."""
    jobs = {}
    for job in _dry_run_blocks(root, "--forceall"):
        cmd = re.sub(r"\s+2>\s*\S+\s*$", "", job["cmd"])  # the log redirect is Snakemake's
        jobs[_name(job["rule"], job["outputs"])] = (" ".join(cmd.split()), job["outputs"])
    return jobs


def dvc_stages(root: Path) -> dict[str, tuple[str, set[str]]]:
    """stage name -> (command, outputs other than persisted resume state), from DVC itself."""
    code = (
        "import json, sys\nfrom dvc.repo import Repo\n"
        "stages = {s.addressing: (s.cmd, sorted(str(o.def_path) for o in s.outs if not o.persist))"
        " for s in Repo(sys.argv[1]).index.stages}\nprint(json.dumps(stages))"
    )
    stages = json.loads(run([sys.executable, "-c", code, str(root)], root).stdout)
    return {n: (" ".join(cmd.split()), set(outs)) for n, (cmd, outs) in stages.items()}


@pytest.mark.parametrize(
    ("variants", "replicates"),
    [
        (None, None),
        ({"fast": {"schedule": {"kind": "oneshot"}}, "x-1": {"init": "pretrained"}}, None),
        ({"fast": {"schedule": {"kind": "oneshot"}}}, {"teachers": [0, 3], "seeds": [0, 1, 2]}),
    ],
    ids=["default-params", "other-variants", "replicates"],
)
def test_snakemake_and_dvc_agree(tmp_path, variants, replicates):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if variants is not None:
        params["variants"] = variants
    if replicates is not None:
        params["replicates"] = replicates
    root = make_project(tmp_path / "p", params)
    smk = snakemake_jobs(root)
    dvc = dvc_stages(root)
    smk.pop("all", None)  # Snakemake's target rule has no outputs of its own
    # DVC's stages depend on their code through manifests, which its `code` stage writes (and
    # Snakemake's commit to DVC's lock): Snakemake reads the source files themselves.
    code_cmd, manifests = dvc.pop("code")
    assert code_cmd == "alphaprune code --src src --out results/code"
    assert manifests == {f"results/code/{stage}.md5" for stage in STAGES}
    assert set(smk) == set(dvc)
    for name in dvc:
        assert smk[name][0] == dvc[name][0], name
        assert smk[name][1] == dvc[name][1], name
    reps = params["replicates"]
    expected = {
        f"prune@{v}-{t}-{s}"
        for v in params["variants"]
        for t in reps["teachers"]
        for s in reps["seeds"]
    } | {f"pretrain@{t}" for t in reps["teachers"]}
    assert expected <= set(dvc)
    # each replicate in its own folder, on its own teacher
    for t in reps["teachers"]:
        for s in reps["seeds"]:
            cmd = dvc[f"prune@fast-{t}-{s}"][0] if "fast" in params["variants"] else ""
            if cmd:
                assert f"--seed {s}" in cmd and f"results/teacher/t{t}/model.pt" in cmd
                assert f"--out results/variants/fast/t{t}-s{s}" in cmd


def test_one_variants_replicates_can_be_asked_for_by_their_targets(tmp_path):
    # Snakemake lists a folder once: the params triggers of a variant's seeds, written while it
    # built the DAG, went missing to it after the first (MissingInputException).
    root = make_project(tmp_path, {**TINY, "replicates": {"seeds": [0, 1, 2], "teachers": [0]}})
    targets = [f"results/variants/a/t0-s{s}/metrics.json" for s in range(3)]
    jobs = {(j["rule"], j["variant"]) for j in _dry_run_blocks(root, *targets)}
    assert {("evaluate", f"a-0-{s}") for s in range(3)} <= jobs
    assert {("prune", f"a-0-{s}") for s in range(3)} <= jobs


def test_snakemake_lint_is_clean():
    out = run([BIN / "snakemake", "--lint"], REPO)
    assert "Congratulations" in out.stdout + out.stderr


def test_every_dvc_output_is_cached_and_git_ignored():
    """A queued or --temp experiment runs in a fresh copy of the last commit, where only
    cached outputs can be restored: an uncached one (say a history left for git) is missing
    there, and DVC reruns its stage (and everything after it). And DVC refuses to cache a file
    git tracks, so every output is ignored. The resume point (checkpoint/) is no output at all:
    DVC leaves undeclared files alone, so a killed prune still resumes."""
    code = (
        "import json, sys\nfrom dvc.repo import Repo\n"
        "print(json.dumps([(str(o.def_path), o.use_cache, o.persist)"
        " for s in Repo(sys.argv[1]).index.stages for o in s.outs]))"
    )
    outs = json.loads(run([sys.executable, "-c", code, str(REPO)], REPO).stdout)

    def ignored(path: str) -> bool:
        return (
            run(["git", "check-ignore", "-q", "--no-index", path], REPO, check=False).returncode
            == 0
        )

    assert outs and all(cached and not persist for _, cached, persist in outs)
    assert [p for p, _, _ in outs if not ignored(p)] == []
    assert not [p for p, _, _ in outs if "checkpoint" in p]


# ------------------------------------------------------------------- what the tools would run
def dry_run_jobs(root: Path) -> set[str]:
    return {
        f"{j['rule']}@{j['variant']}" if j["variant"] else j["rule"]
        for j in _dry_run_blocks(root)
        if j["rule"] != "all"
    }


def dvc_ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


def dvc_changed(root: Path) -> set[str]:
    status = json.loads(run([BIN / "dvc", "status", "--json"], root).stdout)
    return {name.split(":")[-1] for name in status}


def dvc_would_run(root: Path) -> set[str]:
    """Stages `dvc repro` runs: a dry run cannot know a changed stage's outputs will change, so
    --force-downstream includes what depends on them."""
    return dvc_ran(run([BIN / "dvc", "repro", "--dry", "--force-downstream"], root).stdout)


def up_to_date(root: Path, tool: str) -> bool:
    """Whether `tool` has nothing to do in `root`."""
    return (dry_run_jobs(root) if tool == "snakemake" else dvc_changed(root)) == set()


def would_run(root: Path, tool: str) -> set[str]:
    """The jobs `tool` would run in `root` (DVC's named as Snakemake's are)."""
    return dry_run_jobs(root) if tool == "snakemake" else dvc_would_run(root)


@contextlib.contextmanager
def edited(path: Path):
    """`path` with a comment appended, then restored: content and modification time."""
    text, times = path.read_bytes(), path.stat()
    try:
        with path.open("a") as f:
            f.write("# an edit\n")
        os.utime(path, (times.st_atime, time.time() + 10))  # newer than every output
        yield
    finally:
        path.write_bytes(text)
        os.utime(path, (times.st_atime, times.st_mtime))


def readme_exp_show() -> list[str]:
    """The README's `dvc exp show` line for the per-variant summary, as a user would type it."""
    text = (REPO / "README.md").read_text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("dvc exp show --drop")]
    return shlex.split(line.split("  #")[0])


# ------------------------------------------------------------------ runs killed, runs watched
def test_make_run_recovers_from_a_killed_run(tmp_path):
    """kill -9 of a whole Snakemake run mid-prune leaves a lock and incomplete outputs: the next
    plain `snakemake` refuses, `alphaprune unlock` refuses while a run is alive, and `make run`
    unlocks, redoes what was cut short, and the killed prune resumes from its checkpoint."""
    params = {
        **TINY,
        # one variant: its prune is what is killed and resumed; long enough that it is still
        # training ~2 s after its first checkpoint, when it is killed
        "variants": {"a": TINY["variants"]["a"]},
        "prune": {**TINY["prune"], "epochs": 50, "finetune_epochs": 5},
    }
    root = make_project(tmp_path / "p", params)
    first = subprocess.Popen(
        [BIN / "snakemake", "--cores", "2"],
        cwd=root,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        checkpoint = root / "results" / "variants" / "a" / RUN / "checkpoint" / "last.pt"
        while not checkpoint.exists():
            assert first.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        busy = run([BIN / "alphaprune", "unlock"], root, check=False)
        assert first.poll() is None, "the run ended before it could be killed"
        assert busy.returncode == 2 and f"a run is still working in {root}" in busy.stderr
        assert str(first.pid) in busy.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the run and every job it started
        first.wait()
    refused = run([BIN / "snakemake", "--cores", "2"], root, check=False)
    assert refused.returncode != 0
    assert re.search(r"IncompleteFilesException|LockException", refused.stdout + refused.stderr)
    venv = BIN.parent  # the Makefile's own venv, taken as installed
    run(
        [
            "make",
            "-f",
            REPO / "Makefile",
            "run",
            f"VENV={venv}",
            "CORES=2",
            "-o",
            venv / ".installed",
        ],
        root,
    )
    assert "resumed from" in (root / "logs" / "prune" / "a" / f"{RUN}.log").read_text()
    assert dry_run_jobs(root) == set() and dvc_changed(root) == set()


def test_dvc_plots_show_follows_a_run_in_progress(tmp_path):
    """history.csv grows during a prune, and DVC's repo lock does not stop `dvc plots show`."""
    params = {
        **TINY,
        "variants": {"a": TINY["variants"]["a"]},
        "prune": {**TINY["prune"], "epochs": 60, "finetune_epochs": 10},
    }
    root = make_project(tmp_path / "p", params)
    # up to the prune (prepare, pretrain, prune): what follows it has no history to show
    repro = subprocess.Popen([BIN / "dvc", "repro", "-q", f"prune@a-{JOB}"], cwd=root, env=ENV)
    history, seen = f"results/variants/a/{RUN}/history.csv", set()
    try:
        while repro.poll() is None and not (root / history).exists():
            time.sleep(0.05)  # `dvc plots show` costs seconds of CPU: asked once there is a file
        while repro.poll() is None:
            shown = run([BIN / "dvc", "plots", "show", "--json", history], root).stdout
            for plot in json.loads(shown).get("data", {}).get(history, []):
                seen.add(len(plot["content"]["data"]["values"]))
    finally:
        repro.wait(timeout=600)
    assert repro.returncode == 0
    assert any(0 < n < 60 for n in seen), seen  # rows of a run that had not finished


# ------------------------------------------------------------------------ data streamed from disk
STREAMED_SIZE = 32  # resized from 256 px; the size does not change what streams (224 took 3x,
# 64 took 6 s more than 32)


def _imagenet_layout(root: Path, classes: int = 10, per_class: int = 12, size: int = 256) -> None:
    """train/<class>/*.JPEG and val/<class>/*.JPEG, as ImageNet is laid out, at `size` px."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(n):
                tint = rng.integers(0, 256, 3)  # a class colour, with noise on top
                noise = rng.integers(0, 64, (size // 8, size // 8, 3))
                image = Image.fromarray((tint + noise).clip(0, 255).astype("uint8"))
                image.resize((size, size)).save(folder / f"{split}_{c}_{i}.JPEG", quality=90)


@pytest.mark.parametrize("tool", ["snakemake", "dvc"])
def test_an_imagenet_layout_folder_streams_through_the_pipeline(tmp_path, tool):
    """10 classes × 12 JPEGs at 256 px in ImageNet's layout, streamed at 32 px through
    tv:resnet18: `prepare` writes an index of the files, not their pixels, and every stage
    (teacher, prune, evaluate, export, latency) runs from it."""
    params = {
        **TINY,
        "data": {
            "name": "imagefolder",
            "root": "data/raw/imagenet",
            "image_size": STREAMED_SIZE,
            "storage": "streamed",
        },
        "model": {"name": "tv:resnet18"},
        "teacher": {"epochs": 1, "batch_size": 16},
        "prune": {**TINY["prune"], "epochs": 2, "finetune_epochs": 1, "batch_size": 16},
        "variants": {"b-2": TINY["variants"]["b-2"]},
        "runtime": {**TINY["runtime"], "workers": 1},
    }
    root = make_project(tmp_path / "p", params)
    _imagenet_layout(root / "data" / "raw" / "imagenet")
    if tool == "snakemake":
        run([BIN / "snakemake", "--cores", "2"], root)
    else:  # DVC's part: its dependency on the folder, and a teacher trained from the index (the
        # stages after it run the same commands on the same files: test_snakemake_and_dvc_agree)
        run([BIN / "dvc", "repro", "-q", "pretrain@0"], root)
    card = json.loads((root / "data/prepared/imagefolder.json").read_text())
    assert card["storage"] == "streamed" and card["shape"] == [3, STREAMED_SIZE, STREAMED_SIZE]
    assert (card["n_train"], card["n_val"], card["n_test"]) == (108, 12, 20)
    decoded = 140 * 3 * STREAMED_SIZE**2  # the pixels of every image at the streamed size
    assert (root / "data/prepared/imagefolder.pt").stat().st_size < decoded / 10
    teacher = json.loads((root / "results/teacher/t0/metrics.json").read_text())
    assert teacher["epochs"] == 1 and 0 <= teacher["test_acc"] <= 1
    if tool == "dvc":
        status = run([BIN / "dvc", "status", "--json", "pretrain@0"], root).stdout
        assert json.loads(status) == {}  # up to date: prepare and the teacher, as DVC ran them
        return
    metrics = json.loads((root / f"results/variants/b-2/{RUN}/metrics.json").read_text())
    assert 0 <= metrics["test_acc"] <= 1
    assert (root / f"results/latency/b-2/{RUN}/latency.json").exists()
    assert (root / "results/report.md").exists()


# ------------------------------------------------------------------------ the finished projects
# The tests on each finished project (a Snakemake run and a `dvc repro` of the tiny grid) are
# methods of one class, which makes the project once (a class fixture): pytest-xdist keeps a
# class on one worker (make test: --dist loadscope), where they run in order, so the tests that
# edit the project (and restore it) never meet, and the two projects' tests run side by side.


@pytest.fixture(scope="class")
def snakemake_project(tmp_path_factory) -> Path:
    """The tiny grid run by `snakemake --cores 2`; jobs.jsonl holds each job's times."""
    root = make_project(tmp_path_factory.mktemp("smk"), SMK_GRID)
    env, _ = timed_jobs_env(root)
    run([BIN / "snakemake", "--cores", "2"], root, env=env)
    return root


@pytest.fixture(scope="class")
def dvc_project(tmp_path_factory) -> Path:
    root = make_project(tmp_path_factory.mktemp("dvc"), DVC_GRID)
    run([BIN / "dvc", "repro", "-q"], root)
    return root


class _AfterAFinishedRun:
    """What the tool that made `project` (`tool`) must see after edits of it: these tests run on
    each finished project, in its class."""

    tool: str
    grid: dict  # the params the project was made with

    def expect(self, expected: set[str]) -> set[str]:
        return of(expected, self.grid["variants"])

    def test_raw_data_is_compared_by_content_not_time(self, project):
        """data.root is an input of prepare, by content in both tools: a `touch` or a copy
        without -p (new time, new inode, the same bytes) reruns nothing; one byte changed, or a
        file added, reruns prepare and everything after it."""
        raw = project / "data" / "raw"
        readme = raw / "README.md"
        text = readme.read_bytes()
        try:
            os.utime(readme, (time.time() + 10, time.time() + 10))  # touch, newer than outputs
            assert would_run(project, self.tool) == set()
            copy = project / "README.copy"
            shutil.copyfile(readme, copy)  # cp without -p, then moved over the original
            os.replace(copy, readme)
            os.utime(raw, (time.time() + 10, time.time() + 10))
            assert would_run(project, self.tool) == set()
            readme.write_bytes(text.replace(b"a", b"b", 1))
            if self.tool == "dvc":
                assert dvc_changed(project) == {"prepare"}
            assert would_run(project, self.tool) == self.expect(AFTER_RAW_DATA)
            readme.write_bytes(text)
            (raw / "new.jpg").write_bytes(b"more data")
            assert would_run(project, self.tool) == self.expect(AFTER_RAW_DATA)
        finally:
            readme.write_bytes(text)
            (raw / "new.jpg").unlink(missing_ok=True)
        assert up_to_date(project, self.tool)

    def test_a_code_edit_reruns_only_the_stages_that_run_it(self, project):
        """Each source file of AFTER_CODE_EDIT edited in turn (and restored): a dry run each,
        and one check at the end that the restored project has nothing to do (the dry runs are
        what this costs: seconds each). DVC's stages depend on their manifests, which its
        `code` stage writes (1-2 s): `dvc status` names that stage alone after an edit, and once
        it has run, the stages whose code changed."""
        for i, (source, expected) in enumerate(AFTER_CODE_EDIT.items()):
            with edited(project / source):
                if self.tool == "dvc":
                    if i == 0:  # later, the manifests of the edit before are on disk too
                        assert dvc_changed(project) == {"code"}
                    run([BIN / "dvc", "repro", "-q", "code"], project)
                assert would_run(project, self.tool) == self.expect(expected), source
        if self.tool == "dvc":  # the sources restored: the manifests as they were (DVC's cache)
            run([BIN / "dvc", "repro", "-q", "code"], project)
        assert up_to_date(project, self.tool)

    def test_a_params_edit_reruns_the_export_only_if_it_changes_the_student(self, project):
        before = (project / "params.yaml").read_text()
        try:
            for key, ((section, name, value), expected) in AFTER_PARAMS_EDIT.items():
                edit_params(
                    project,
                    lambda p, s=section, k=name, v=value: p.setdefault(s, {}).update({k: v}),
                )
                assert would_run(project, self.tool) == self.expect(expected), key
                (project / "params.yaml").write_text(before)
        finally:
            (project / "params.yaml").write_text(before)
        assert up_to_date(project, self.tool)


@pytest.mark.slow(seconds=170)
class TestSnakemakeRun(_AfterAFinishedRun):
    """The tiny grid run by `snakemake --cores 2` (snakemake_project), and what follows it."""

    tool = "snakemake"
    grid = SMK_GRID

    @pytest.fixture(scope="class")
    @classmethod
    def project(cls, snakemake_project) -> Path:
        return snakemake_project

    def test_snakemake_never_runs_more_threads_than_cores(self, snakemake_project):
        """snakemake/snakemake#3913 (9.10-9.16): after the 2-thread teacher ended, all four prunes
        started at once on 2 cores."""
        lines = (snakemake_project / "jobs.jsonl").read_text().splitlines()
        jobs = [json.loads(line) for line in lines]
        assert sorted(j["command"] for j in jobs) == sorted(
            ["prepare", "pretrain", "export", "table", "latency", "plots", "report"]  # the
            # teacher's export
            + list(RUN_STAGES) * len(TINY["variants"])
        )
        assert {j["threads"] for j in jobs if j["command"] == "pretrain"} == {2}
        assert peak_threads(jobs) == 2  # never more than --cores, and jobs did run side by side

    def test_snakemake_times_every_student_alone(self, snakemake_project):
        """The latency job and the table's take every core, so nothing runs beside them: each
        started after every job before it ended, and ended before any other started."""
        lines = (snakemake_project / "jobs.jsonl").read_text().splitlines()
        jobs = [json.loads(line) for line in lines]
        timed = [j for j in jobs if j["command"] in ("latency", "table")]
        assert len(timed) == 2 and {j["threads"] for j in timed} == {2}
        for job in timed:
            others = [j for j in jobs if j is not job]
            assert not [j for j in others if j["start"] < job["end"] and j["end"] > job["start"]]

    def test_snakemake_runs_the_whole_dag(self, snakemake_project):
        root = snakemake_project
        for v in TINY["variants"]:
            d = root / "results" / "variants" / v / RUN
            metrics = json.loads((d / "metrics.json").read_text())
            assert 0 < metrics["test_acc"] <= 1  # c's target is latency, the others' params
            assert metrics["achieved"] >= 0.65 or SMK_GRID["variants"][v].get("target")
            assert metrics["epochs"] == TINY["prune"]["epochs"]
            assert (d / "student.pt").stat().st_size > 0
            assert (d / "checkpoint").is_dir()
            assert (root / "results" / "plots" / f"training_{v}.png").read_bytes()[:4] == b"\x89PNG"
            assert (root / "logs" / "prune" / v / f"{RUN}.log").exists()
            predictions = (d / "predictions.csv").read_text().splitlines()
            assert predictions[0] == "label,pred" and len(predictions) == metrics["test_size"] + 1
            # the ONNX student computes the student: on digits every prediction agrees
            check = json.loads((d / "onnx.json").read_text())
            assert (d / "student.onnx").stat().st_size > 0 and check["onnx_batchnorm_nodes"] == 0
            assert check["onnx_top1_agreement"] == 1.0 and check["onnx_max_abs_logit_diff"] < 1e-4
            assert check["onnx_sparse_as_dense"] == (v == "d")
            timed = json.loads(
                (root / "results" / "latency" / v / RUN / "latency.json").read_text()
            )
            assert timed["latency_threads"] == 1 and timed["throughput_batch"] == 8
            speedup = timed["teacher_ort_latency_ms"] / timed["student_ort_latency_ms"]
            assert timed["ort_latency_speedup"] == pytest.approx(speedup)
            low, high = timed["ort_latency_speedup_range"]
            assert low <= timed["ort_latency_speedup"] <= high
            # d (sparse) deploys dense: the teacher's architecture, timed once, speedup exactly 1
            assert (timed["ort_latency_speedup"] == 1.0) == (v == "d")
        assert (root / "results" / "variants" / "a" / RUN / "checkpoint" / "last.pt").exists()
        for fig in ("accuracy_vs_alpha", "final_accuracy", "accuracy_vs_size", "speedup_vs_macs"):
            assert (root / "results" / "plots" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
        report = (root / "results" / "report.md").read_text()
        assert "| a " in report and "| b-2 " in report and "plots/final_accuracy.png" in report
        assert "## Deployment: is the student faster?" in report
        assert "Sparse students (`d`) are exported dense" in report
        teacher = json.loads((root / "results" / "teacher" / "t0" / "metrics.json").read_text())
        assert teacher["epochs"] == 3
        # the teacher's ONNX file, exported once, is what every student was timed against
        check = json.loads((root / "results" / "teacher" / "t0" / "onnx.json").read_text())
        assert (root / "results" / "teacher" / "t0" / "model.onnx").stat().st_size > 0
        assert check["onnx_top1_agreement"] == 1.0 and check["onnx_batchnorm_nodes"] == 0
        assert dry_run_jobs(root) == set()
        assert "Nothing to be done" in run([BIN / "snakemake", "-n"], root).stdout

    def test_a_latency_target_plans_from_the_measured_table(self, snakemake_project):
        """The table stage measured the params' model at the throughput batch on the latency
        threads, and the variant of `target: latency` planned from it: its plan records the
        table's teacher time and a predicted time at most 1 - amount of it."""
        from alphaprune.loading import load_model

        root = snakemake_project
        table = json.loads((root / "results" / "table" / "table.json").read_text())
        assert (table["batch"], table["threads"], table["round_to"]) == (8, 1, 8)
        assert table["conditions"]["rounds"] == SMK_TABLE["rounds"]
        assert table["layers"] and table["groups"] == {}  # measured per layer, the default
        for v in SMK_GRID["variants"]:
            _, recipe = load_model(root / "results" / "variants" / v / RUN / "student.pt")
            plan = recipe["plan"]
            assert (plan["target"] == "latency") == (v == "c") == ("latency" in plan)
        _, recipe = load_model(root / "results" / "variants" / "c" / RUN / "student.pt")
        planned = recipe["plan"]["latency"]
        assert planned["teacher_ms"] == table["full_ms"] and planned["batch"] == 8
        assert planned["student_ms"] <= (1 - 0.25) * table["full_ms"] * (1 + 1e-9)

    def test_snakemake_reruns_only_the_edited_variant(self, snakemake_project):
        root = snakemake_project
        before = (root / "params.yaml").read_text()
        try:
            edit_params(root, lambda p: p["variants"]["b-2"].update(init="pretrained"))
            assert dry_run_jobs(root) == AFTER_B2
            edit_params(root, lambda p: p["teacher"].update(epochs=4))
            assert dry_run_jobs(root) == AFTER_TEACHER
        finally:
            (root / "params.yaml").write_text(before)
        assert dry_run_jobs(root) == set()

    def test_compare_prints_one_row_per_variant_in_120_columns(self, snakemake_project):
        out = run([BIN / "alphaprune", "compare"], snakemake_project).stdout
        header, titles, *rows = out.splitlines()
        assert header.startswith("teacher: test acc 0.")
        assert sorted(r.split()[0] for r in rows) == sorted(TINY["variants"])
        for title in (
            "test acc",
            "Δ pp",
            "noisy acc",
            "removed",
            "MACs",
            "α reached",
            "α held tr",
            "α held val",
            "ORT ×",
            "train s",
        ):
            assert title in titles
        assert all(len(row.split()) == 11 for row in rows)  # every figure present, no blanks
        assert max(map(len, out.splitlines())) <= 120

    def test_snakemake_preset_replaces_the_grid(self, snakemake_project, tmp_path):
        preset = snakemake_project / "configs" / "one.yaml"
        preset.parent.mkdir(exist_ok=True)
        preset.write_text(yaml.safe_dump({"variants": {"solo": {"schedule": {"kind": "oneshot"}}}}))
        out = run(
            [BIN / "snakemake", "-n", "--configfile", "configs/one.yaml", "--printshellcmds"],
            snakemake_project,
        ).stdout
        assert "--params params.yaml --params configs/one.yaml" in out
        assert "variant=solo" in out and "variant=a" not in out

    def test_a_snakemake_run_leaves_dvc_up_to_date(self, snakemake_project):
        """Snakemake's onsuccess records its run in DVC's lock, with the code manifests it wrote:
        byte for byte those DVC's `code` stage writes (run again, it changes no stage's deps)."""
        assert dvc_changed(snakemake_project) == set()
        run([BIN / "dvc", "repro", "-q", "--force", "code"], snakemake_project)
        assert dvc_changed(snakemake_project) == set()

    def test_edit_a_variant_then_dvc_repro_after_a_snakemake_run(self, snakemake_project):
        """The flow the product is built for: `snakemake` for a run, then a param change and
        `dvc repro`, which reruns that variant only; then both tools are up to date."""
        root = snakemake_project
        before = (root / "params.yaml").read_text()
        try:
            edit_params(root, lambda p: p["variants"]["b-2"].update(init="pretrained"))
            assert (
                dry_run_jobs(root) == AFTER_B2
            )  # Snakemake sees the edit (a dry run changes nothing)
            assert dvc_ran(run([BIN / "dvc", "repro"], root).stdout) == AFTER_B2
            assert dry_run_jobs(root) == set() and dvc_changed(root) == set()
        finally:
            (root / "params.yaml").write_text(before)
        # Back as it was: DVC has the earlier outputs in its cache (the Snakemake run's, which
        # it recorded) and puts them back instead of training again.
        out = run([BIN / "dvc", "repro"], root).stdout
        assert dvc_ran(out) == set() and f"Stage 'prune@b-2-{JOB}' is cached" in out
        assert dry_run_jobs(root) == set() and dvc_changed(root) == set()

    def test_presets_and_partial_runs_keep_the_tools_honest(self, snakemake_project):
        """A run with a preset makes outputs params.yaml does not describe: DVC's lock is left as it
        was, and a later plain run sees those jobs as stale through their records. A run of one
        target records only the stages of its own DAG. (The preset changes how students are
        timed: the fewest jobs that show it.)"""
        root = snakemake_project
        preset = root / "configs" / "rounds.yaml"
        preset.parent.mkdir(exist_ok=True)
        preset.write_text(yaml.safe_dump({"latency": {"rounds": 2}}))
        try:
            out = run(
                [BIN / "snakemake", "--cores", "2", "--configfile", "configs/rounds.yaml"], root
            )
            assert "Not recorded in DVC's lock: this run read presets" in out.stdout + out.stderr
            assert dry_run_jobs(root) == GRID
            assert "latency" in dvc_changed(root)
            one = run([BIN / "snakemake", "--cores", "2", "results/latency"], root)
            # its DAG: every stage up to the latency stage (up to date) and latency (made)
            n = 4 + 3 * len(TINY["variants"]) + 1  # prepare, pretrain, export_teacher, table, runs
            assert f"the {n} stages of this run" in one.stdout + one.stderr
            assert {"plots", "report"} <= dvc_changed(root)  # not recorded: not in its DAG
        finally:
            preset.unlink()
        run([BIN / "snakemake", "--cores", "2"], root)
        assert dry_run_jobs(root) == set() and dvc_changed(root) == set()


@pytest.mark.slow(seconds=150)
class TestDvcRepro(_AfterAFinishedRun):
    """The tiny grid run by `dvc repro` (dvc_project), and what follows it."""

    tool = "dvc"
    grid = DVC_GRID

    @pytest.fixture(scope="class")
    @classmethod
    def project(cls, dvc_project) -> Path:
        return dvc_project

    def test_a_dvc_repro_leaves_snakemake_nothing_to_do(self, dvc_project):
        """The stage commands record the params they ran with, which is what the Snakefile
        compares, so after `dvc repro` Snakemake has nothing to do either."""
        assert dry_run_jobs(dvc_project) == set()

    def test_python_bytecode_is_not_code(self, dvc_project):
        """The `code` stage hashes src/alphaprune: the bytecode Python writes there when the
        package is imported from it (.dvcignore) changes nothing."""
        cache = dvc_project / "src" / "alphaprune" / "__pycache__"
        cache.mkdir(exist_ok=True)
        (cache / "fit.cpython-311.pyc").write_bytes(b"bytecode")
        try:
            assert dvc_changed(dvc_project) == set()
        finally:
            shutil.rmtree(cache)

    def test_dvc_repro_and_exp_show(self, dvc_project):
        root = dvc_project
        assert dvc_changed(root) == set()
        for v in DVC_GRID["variants"]:
            assert (root / "results" / "variants" / v / RUN / "metrics.json").exists()
        shown = json.loads(run([BIN / "dvc", "exp", "show", "--json"], root).stdout)
        text = json.dumps(shown)
        for v in DVC_GRID["variants"]:
            assert f"results/variants/{v}/{RUN}/metrics.json" in text
        assert "test_acc" in text and "achieved" in text

    def test_an_unmeasured_table_reruns_no_prune(self, dvc_project):
        """With latency.table unset the table stage writes that it measured nothing: an edit it
        reads (the latency threads) reruns it, and no prune is then out of date, though every
        prune depends on its file (the bytes are the same)."""
        root = dvc_project
        before = (root / "params.yaml").read_text()
        try:
            edit_params(root, lambda p: p["latency"].update(threads=2))
            assert dvc_ran(run([BIN / "dvc", "repro", "table"], root).stdout) == {"table"}
            assert dvc_changed(root) == {"latency"}  # its own params; no prune: their deps held
        finally:
            (root / "params.yaml").write_text(before)
        run([BIN / "dvc", "repro", "table"], root)  # back as it was (from DVC's cache)
        assert dvc_changed(root) == set()

    def test_dvc_selects_only_the_edited_variant(self, dvc_project):
        root = dvc_project
        before = (root / "params.yaml").read_text()
        try:
            edit_params(root, lambda p: p["variants"]["b-2"].update(init="pretrained"))
            # status lists the stages that read the edited params (latency reads the grid);
            # export reads none, and reruns because its student does
            assert dvc_changed(root) == AFTER_B2 - jobs("export")  # b-2: in both grids
            assert dvc_would_run(root) == AFTER_B2
            (root / "params.yaml").write_text(before)
            edit_params(root, lambda p: p["teacher"].update(epochs=4))
            assert dvc_changed(root) == {
                "pretrain@0"
            }  # status lists the stage whose params changed
            assert dvc_would_run(root) == self.expect(AFTER_TEACHER)
        finally:
            (root / "params.yaml").write_text(before)
        assert dvc_changed(root) == set()

    def test_dvc_plots_show_renders_the_histories(self, dvc_project):
        shown = json.loads(run([BIN / "dvc", "plots", "show", "--json"], dvc_project).stdout)[
            "data"
        ]
        for v in DVC_GRID["variants"]:
            (plot,) = shown[f"results/variants/{v}/{RUN}/history.csv"]
            assert plot["type"] == "vega"
            rows = plot["content"]["data"]["values"]
            assert [int(r["epoch"]) for r in rows] == list(range(1, TINY["prune"]["epochs"] + 1))
            assert all("val_acc" in r and "alpha" in r for r in rows)
            assert shown[f"results/plots/training_{v}.png"][0]["type"] == "image"
        assert shown["results/plots/final_accuracy.png"][0]["type"] == "image"

    def test_dvc_exp_run_with_a_changed_setting(self, dvc_project):
        """DESIGN 6: `dvc exp run -S variants.<v>.schedule.rate=...`, then `dvc exp show` lists the
        experiment with its params and every variant's metrics; only variant a reruns, in the
        workspace and in queued experiments alike (each runs in a fresh copy of the last commit,
        and restores from DVC's cache what its change does not touch). The README's summary
        view shows each experiment's accuracy per variant in one readable row, and `alphaprune
        compare` the two experiments variant by variant."""
        root = dvc_project
        git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
        run(["git", "add", "-A"], root)  # dvc.lock: the results are DVC's (git-ignored)
        run([*git, "commit", "-qm", "the finished grid"], root)
        for name, rate in (("rate03", 0.3), ("rate01", 0.1)):
            change = ("-S", f"variants.a.schedule.rate={rate}")
            run([BIN / "dvc", "exp", "run", "--queue", "-n", name, *change], root)
        run([BIN / "dvc", "exp", "run", "--run-all", "--jobs", "2"], root)
        a_only = {f"{stage}@a-{JOB}" for stage in RUN_STAGES} | GRID
        for name in ("rate03", "rate01"):
            assert dvc_ran(run([BIN / "dvc", "queue", "logs", name], root).stdout) == a_only
        shown = json.loads(run([BIN / "dvc", "exp", "show", "--json"], root).stdout)
        exps = {
            rev["name"]: rev["data"]
            for commit in shown
            for exp in commit.get("experiments") or []
            for rev in exp["revs"]
        }
        data = exps["rate03"]
        assert data["params"]["params.yaml"]["data"]["variants"]["a"]["schedule"]["rate"] == 0.3
        for v in DVC_GRID["variants"]:
            metrics = data["metrics"][f"results/variants/{v}/{RUN}/metrics.json"]["data"]
            assert 0 < metrics["test_acc"] <= 1

        command = readme_exp_show()
        shown = run([BIN / command[0], *command[1:]], root, env={**ENV, "COLUMNS": "120"}).stdout
        assert "…" not in shown and max(map(len, shown.splitlines())) <= 120
        titles = next(line for line in shown.splitlines() if "Experiment" in line).split()
        assert titles == ["Experiment", "acc.teacher", *(f"acc.{v}" for v in DVC_GRID["variants"])]
        for name in ("[rate01]", "[rate03]"):
            (row,) = [line for line in shown.splitlines() if name in line]
            assert all(
                re.fullmatch(r"0\.\d+|1\.0", cell) for cell in row.split()[-len(titles) + 1 :]
            )

        versus = run([BIN / "alphaprune", "compare", "--exp", "rate01", "--exp", "rate03"], root)
        header, titles, *rows = versus.stdout.splitlines()
        assert header.startswith("A = rate01 (teacher 0.") and "B = rate03" in header
        deltas = {r.split()[0]: float(r.split()[3]) for r in rows}  # Δ test, in points
        assert set(deltas) == set(DVC_GRID["variants"])
        assert all(deltas[v] == 0 for v in deltas if v != "a")  # only a was retrained
