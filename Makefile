# trnews: `make demo` and `make test` are the quick start; see README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TRNEWS := $(BIN)/trnews
DEMO := var/demo/trnews.toml

.PHONY: help install demo test corpus lint format bench messages clean

help:
	@echo "make demo    set up, then collect and send the bundled example offline into var/outbox"
	@echo "make test    run the test suite"
	@echo "make lint    ruff, mypy and hadolint"
	@echo "make bench   benchmarks (ratios against a baseline measured in the same run)"

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	@$(BIN)/python -m pipeline.demo . >/dev/null
	$(TRNEWS) -c $(DEMO) check
	$(TRNEWS) -c $(DEMO) subscribers add kari.leser@example.org --name "Kari Leser"
	$(TRNEWS) -c $(DEMO) subscribers add ola.leser@example.org --name "Ola Leser"
	$(TRNEWS) -c $(DEMO) collect
	$(TRNEWS) -c $(DEMO) preview --out var/preview
	$(TRNEWS) -c $(DEMO) send
	$(TRNEWS) -c $(DEMO) status
	@echo
	@echo "Done. Look at:"
	@echo "  var/outbox/new/          one message per subscriber (a Maildir: mutt -f var/outbox)"
	@echo "  var/preview/preview.html the edition as HTML (open it in a browser)"
	@echo "  var/preview/preview.txt  the plain-text part"
	@echo "  $(DEMO)  the demo config (config/trnews.toml with its dates moved to today)"

# One worker per core: the tests mostly wait on loopback servers and processes.
test: install corpus
	$(BIN)/pytest -n auto

# The calendars of tests/test_calendar_corpus.py: the icalendar and recurring-ical-events sdists
# at the versions installed, fetched from PyPI once into var/corpus (tests/calendar_corpus.py).
corpus: install
	$(BIN)/python tests/calendar_corpus.py

lint: install
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

format: install
	$(BIN)/ruff format pipeline tests bench
	$(BIN)/ruff check --fix pipeline tests bench

# The deliver benchmark's receiver is Postfix's smtp-sink: installed here if missing and we can
# (root and apt-get); without it those cases are skipped, never the bench.
bench: install
	@command -v smtp-sink >/dev/null || test -x /usr/sbin/smtp-sink || \
		{ test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
		  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postfix \
		    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		         --no-install-recommends postfix; }; } >/dev/null 2>&1; } || \
		echo "smtp-sink not installed (apt-get install postfix): the deliver benchmark skips it"
	$(BIN)/python bench/run.py

# Extract the newsletter's messages from pipeline/ and templates/ (babel.cfg) into the
# template catalogue, then merge it into each language's .po; translate what is new or fuzzy
# there. trnews reads the .po files themselves: there is no .mo to compile.
messages: install
	$(BIN)/pybabel extract -F babel.cfg -c "Translators:" --no-wrap --sort-by-file \
		--project trnews --copyright-holder Trondheimsregionen \
		--msgid-bugs-address post@trondheimsregionen.no -o pipeline/locale/trnews.pot .
	$(BIN)/pybabel update -i pipeline/locale/trnews.pot -d pipeline/locale -D trnews --no-wrap

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
