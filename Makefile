# Two commands do everything on a fresh machine:
#   make demo   - set up .venv if needed, then train SmolLM2-135M with GRPO on Countdown (CPU)
#   make test   - set up .venv if needed, then run the test suite
VENV := .venv
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test setup

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python launcher/grpo.py --config configs/grpo_countdown_cpu.yaml $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest tests -q --durations=15 $(ARGS)
