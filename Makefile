# Two commands for a fresh machine: `make run` and `make test`.
# The venv is (re)built when pyproject.toml changes; everything the project needs comes from it.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CORES  ?= all
# Version ceilings for the install (see the file); `make install CONSTRAINTS=` drops them.
CONSTRAINTS ?= constraints.txt

.PHONY: install test test-isa test-slurm run report lint dvc-code clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	touch $@

# Tests run on every core (pytest-xdist, a worker a core; TEST_WORKERS=0 runs them in this
# process). A worker takes a test class or a module's functions at a time, in the order
# tests/conftest.py sorts them (the slowest first); the tests of one finished tiny pipeline
# are a class, and so share it, in order.
TEST_WORKERS ?= auto

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# The tests of float results (the `numerics` marker) as a CPU with SSE4.1 only would run them:
# ATen's default kernels and oneDNN capped at SSE4.1. With `make test` on this CPU's own kernels
# (AVX2, or AVX-512 and AMX), that is the widest spread of kernels one machine can show.
ISA_ENV ?= ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41

test-isa: $(STAMP)
	$(ISA_ENV) $(PY) -m pytest -m numerics -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# The pipeline on a one-node SLURM cluster started on this machine (root; installs slurm-wlm and
# munge with apt-get if missing). -s shows the SLURM job ids.
test-slurm: $(STAMP)
	$(PY) -m pytest -m slurm -s -v tests/pipeline/test_slurm.py

# The whole pipeline on params.yaml (digits by default): prepare, teacher, every variant,
# plots, report. Re-running does only what changed. After a run that was killed outright, it
# removes the lock that run left (if no Snakemake is running here), redoes the jobs it cut
# short, and killed prunes resume from their last finished alpha step.
run: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" alphaprune unlock && \
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --cores $(CORES) --rerun-incomplete

# Snakemake's HTML report (the figures, with provenance) beside results/report.md.
report: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --report results/report.html

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports  # the engine never imports the pipeline (pyproject.toml)

# After adding a stage or changing the params keys one reads (records.STAGE_PARAMS): write each
# stage's params and code manifest into dvc.yaml (what a stage imports is found at every run, by
# Snakemake and by DVC's `code` stage; tests/pipeline/provenance/test_dvcyaml.py fails until this
# is run).
dvc-code: $(STAMP)
	$(PY) -m alphaprune.pipeline.provenance.dvcyaml dvc.yaml

clean:
	rm -rf results data/prepared logs .snakemake
