# One entry point for the checks CI runs.
.PHONY: lint test bench

lint:
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	ruff check .
	ruff format --check .
	mypy -p alkdev_storage
	python -m mypy.stubtest alkdev_storage._native

test:
	pytest

bench:
	pytest benches --benchmark-only --benchmark-json=.benchmarks/latest.json
	python benches/report.py .benchmarks/latest.json
