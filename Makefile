# dgdehaze: `make demo` and `make test` build .venv when it is missing (tools/setup_venv.sh), then run.
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: venv test demo clean-venv

$(VENV)/.ready: requirements.txt requirements.lock setup.py tools/setup_venv.sh
	VENV=$(VENV) bash tools/setup_venv.sh

venv: $(VENV)/.ready

test: venv
	$(PY) -m pytest tests

demo: venv
	$(VENV)/bin/dgdehaze dehaze ../shared/data/hazy-real/urhi --method dcp --out out/demo

clean-venv:
	rm -rf $(VENV)
