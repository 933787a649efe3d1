# Developer shortcuts. CI runs .ci/run, which uses the same commands.
PY ?= .venv/bin/python

.PHONY: venv build-dev build-prod build-profiling test lint stubtest bench bench-readme gate fuzz ct robust clean-so

venv:
	python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'

clean-so:
	rm -f python/ikeqcd/_core*.so

build-dev: clean-so
	$(PY) -m maturin develop

build-prod: clean-so
	$(PY) -m maturin develop --release

build-profiling: clean-so
	$(PY) -m maturin develop --profile profiling

test:
	cargo test --release --locked
	$(PY) -m pytest -q

lint:
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	$(PY) -m ruff check python tests benches
	$(PY) -m mypy --strict python/ikeqcd

stubtest:
	$(PY) -m mypy.stubtest ikeqcd._core --allowlist .mypy-stubtest-allowlist

bench:
	$(PY) -m pytest benches/ --benchmark-enable -q
	$(PY) -m ikeqcd bench

# The benchmark gate of .ci/run: same-run ratios against benches/floors.toml.
gate:
	$(PY) -m ikeqcd.gate

# Regenerate the README's performance tables (between the bench markers) on this machine.
bench-readme:
	$(PY) -m ikeqcd bench --write-readme README.md

# Robustness campaigns (figures in SECURITY.md). fuzz needs nightly + cargo-fuzz.
fuzz:
	scripts/fuzz.sh all 150
	$(PY) scripts/fuzz_python.py --seconds 360

ct:
	cargo bench --bench ct_dudect

robust: ct fuzz
	$(PY) scripts/crash_secret.py --kills 1000
	$(PY) -m ikeqcd simulate --attack standby-replay
