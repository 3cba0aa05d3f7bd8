# The two commands of the README: `make run` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A shared offline copy of MNIST beside the checkout (course machines, CI) is used when present;
# otherwise digitrec downloads MNIST into the user cache on first use.
export DIGITREC_DATA ?= $(firstword $(wildcard $(abspath ../shared/data/mnist)))

.PHONY: run test install lint model rows detector browser

install: $(VENV)/.installed

# torch goes in first, pinned to the CPU build that pip finds here, so that nothing pulls CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

run: install
	@set -e; out=runs/default-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/digitrec train --dry-run; \
	start=$$(date +%s); $(BIN)/digitrec train --out $$out; trained=$$(date +%s); \
	$(BIN)/digitrec data stats --out $$out/data; counted=$$(date +%s); \
	$(BIN)/digitrec evaluate $$out; evaluated=$$(date +%s); \
	echo; echo "took: training $$(( (trained - start) / 60 )) min $$(( (trained - start) % 60 )) s," \
	  "data stats $$((counted - trained)) s, evaluation and report $$((evaluated - counted)) s"; \
	echo "Done. Report: $$out/report/report.html (and report.md beside it)"

lint: install
	$(BIN)/ruff check src tests benchmarks tools

# The page's test drives Debian's chromium through chromedriver; install both where they are missing (as root, as CI runs).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "note: could not install chromium and chromium-driver; the browser test will be skipped"

# The model that ships in the package: the default recipe, seed 0 (10-20 min on two cores), evaluated and exported.
model: install
	$(BIN)/python tools/bundle_model.py

# The row reader that ships in the package, which counts the digits of a written number: `digitrec train --model rows`,
# seed 0, exported with its provenance (~15 min on two cores).
rows: install
	$(BIN)/python tools/bundle_model.py --model rows

# The detector that ships in the package, which tells a digit from what is not one: `digitrec train --model detector`,
# seed 0, exported with its provenance (~12 min on two cores).
detector: install
	$(BIN)/python tools/bundle_model.py --model detector

# Two workers, one a core (pytest-xdist; tests sharing an expensive fixture on one), in a random order whose seed is printed
# first (pytest-randomly: `-p randomly --randomly-seed=N` replays it); the 25 slowest tests are listed at the end.
test: install lint browser
	@seed=$$(od -An -N2 -tu2 /dev/urandom | tr -d ' '); set -x; \
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=25 -p randomly --randomly-seed=$$seed
