# The README's commands. Every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lock clean

run: $(VENV)/.installed
	scripts/run

test: $(VENV)/.installed
	$(BIN)/python -m pytest

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.txt -r requirements-dev.txt
	touch $@

# Regenerate both lock files from their .in files. Run with the Python that
# .python-version names, because the resolution depends on the Python version.
lock: $(VENV)/.installed
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
		--output-file=requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
		--output-file=requirements-dev.txt requirements-dev.in

clean:
	rm -rf $(VENV)
