# dnrt: two commands after `git clone`: `make demo` runs the main job, `make test` runs the tests.
# Another torch build: make setup TORCH_SPEC="torch==2.5.1 torchvision==0.20.1" \
#                                  TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu124"
PY := .venv/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=
PYTEST_ARGS ?=
# conf/experiment/demo.yaml: {resnet18, vit_tiny} x {gelu, dnrt} x 3 seeds, two worker processes.
DEMO_SWEEP := experiment=demo hydra/launcher=parallel
# An experiment of its own, so the demo's table reads this grid's runs and no other recipe's.
DEMO_EXPERIMENT ?= digits-demo

.PHONY: setup test test-fast lint demo bench ui server clean

setup: .venv/.installed

.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install $(TORCH_SPEC) $(TORCH_INDEX)
	$(PY) -m pip install -e '.[dev,optuna,graph]'
	touch $@

# Two pytest-xdist workers; the tests sharing a SLURM cluster or the sweep store stay on one worker each
# (tests/harness/hooks.py). TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

# pytest's exit code 5 (no tests collected) is a failure, not a pass.
test: setup
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

# The fast tier: the tests tests/harness/hooks.py marks `fast` (none of its long markers).
test-fast: setup
	$(PY) -m pytest $(XDIST) -m fast $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

lint: setup
	$(PY) -m ruff check .

demo: setup
	$(PY) launch.py -m $(DEMO_SWEEP) tracking.experiment=$(DEMO_EXPERIMENT)
	$(PY) -m analysis.ablation --experiment $(DEMO_EXPERIMENT) --rows model --cols act,regularizer \
		--baseline act=gelu,regularizer=none --out outputs/demo
	$(PY) -m analysis.plots --experiment $(DEMO_EXPERIMENT) --out outputs/demo/plots
	$(PY) -m analysis.report --experiment $(DEMO_EXPERIMENT) --out outputs/demo/report

# Writes benchmarks/results/latest.{json,md} (docs/measurements.md says how to read them).
bench: setup
	$(PY) -m benchmarks.run $(if $(QUICK),--quick,)

ui: setup
	$(PY) -m mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(or $(PORT),5000)

server: setup
	$(PY) -m mlflow server --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
		--artifacts-destination $(CURDIR)/mlartifacts --host 127.0.0.1 --port $(or $(PORT),5000)

clean:
	rm -rf outputs multirun checkpoints mlflow.db mlruns mlartifacts
