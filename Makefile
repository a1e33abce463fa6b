# Two set-up commands: `make demo` and `make test`. Each creates .venv, installs torch==2.13.0 FIRST (a bare
# `torch` requirement would pull a multi-GB CUDA build), then the project with its test extras, then (as root)
# Debian's WordNet for EDA synonyms.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow docs venv wordnet browser lint docker-test clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	# hear21passt: the reference PaSST model tests/trainer/test_passt_encoder.py compares trainer/encoders/passt.py with.
	# --no-deps: it requires torchaudio and timm, whose wheels pin other torch builds than the CPU torch above
	# (timm pulls torchvision, which pulls a CUDA torch); the test imports only hear21passt/models/passt.py,
	# which needs neither (that file says how).
	$(BIN)/python -m pip install -q --no-deps hear21passt==0.0.26
	touch $(STAMP)

venv: $(STAMP) wordnet

wordnet:
	@if [ "$$(id -u)" = "0" ] && [ ! -f /usr/share/wordnet/data.noun ]; then \
		(apt-get install -y -q wordnet-base wordnet-sense-index >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q wordnet-base wordnet-sense-index >/dev/null)); \
	fi

# The report test opens a page in a real headless browser: Debian's chromium, installed as root when missing
# (driven over its DevTools pipe, so no chromedriver; without chromium that one test is skipped and says why).
browser:
	@if [ "$$(id -u)" = "0" ] && ! command -v chromium >/dev/null; then \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null)); \
	fi

test: venv browser
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: venv browser
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

demo: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 bash scripts/demo.sh

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or a page left out of the nav
# fails. docs/cli.md is generated from the Click commands at build time.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

lint: venv
	$(BIN)/ruff check .
	$(BIN)/hadolint --failure-threshold warning Dockerfile

# The Dockerfile built with buildah on a debootstrapped Debian + CPU torch base and run with podman as the docs
# tell users (slow, minutes; as root; not in `make test`). The base and layers are kept in .docker-test/.
docker-test:
	bash scripts/docker_test.sh

clean:
	rm -rf $(VENV) demo site
