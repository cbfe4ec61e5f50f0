# Two commands do everything on a fresh machine:
#   make demo   - set up .venv if needed, then train SmolLM2-135M with GRPO on Countdown (CPU)
#   make test   - set up .venv if needed, then lint (ruff) and run the whole test suite
#   make quick  - the same without the e2e tests (no Ray, no vLLM): the edit-test loop, minutes
VENV := .venv
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test quick lint setup

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python launcher/grpo.py --config configs/grpo_countdown_cpu.yaml $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/python -m pytest tests -q --durations=15 $(ARGS)

quick: lint
	$(VENV)/bin/python -m pytest tests -q -m "not e2e" --durations=10 $(ARGS)
