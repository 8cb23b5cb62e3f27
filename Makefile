# The two commands a fresh machine needs: `make demo` and `make test`.
# Everything else here is what those two are made of.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml | $(PYTHON) -c "import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:12])")

# The Cashu mint the payment tests start (research/deps.md §4): nutshell in its own venv,
# because it pins websockets/cryptography/coincurve versions dvmkit cannot share.
MINT_VENV  ?= .venv-mint
MINT_REQS   = tests/payments/mint-requirements.txt
MINT_STAMP  = $(MINT_VENV)/.installed-$(shell cat $(MINT_REQS) | $(PYTHON) -c "import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:12])")

# The independent NIP-47 wallet service the interop tests run (Alby's NWCWalletService from
# npm), pinned by its package-lock.json. `npm ci` empties node_modules first, stamp included.
ALBY_DIR   = tests/payments/alby
ALBY_STAMP = $(ALBY_DIR)/node_modules/.installed

.PHONY: demo test lint typecheck pytest bench install mint alby clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

$(MINT_STAMP): $(MINT_REQS)
	rm -rf $(MINT_VENV)
	$(PYTHON) -m venv $(MINT_VENV)
	$(MINT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MINT_VENV)/bin/python -m pip install --quiet -r $(MINT_REQS)
	$(MINT_VENV)/bin/mint --help >/dev/null
	touch $(MINT_STAMP)

mint: $(MINT_STAMP)

$(ALBY_STAMP): $(ALBY_DIR)/package.json $(ALBY_DIR)/package-lock.json
	cd $(ALBY_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(ALBY_STAMP)

alby: $(ALBY_STAMP)

# The demo's Cashu step starts the nutshell mint that `make mint` installs.
demo: $(STAMP) $(MINT_STAMP)
	DVMKIT_MINT_BIN=$(MINT_VENV)/bin/mint $(BIN)/dvm demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(MINT_STAMP) $(ALBY_STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks crypto

clean:
	rm -rf $(VENV) $(MINT_VENV) $(ALBY_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
