# One entry point for the checks CI runs.
.PHONY: lint test bench wheel

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

# A manylinux_2_28 abi3 wheel (one for every CPython >= 3.11) in dist/:
# zig (the `wheel` extra's ziglang) links against glibc 2.28's symbols, so the
# wheel runs on any Linux with glibc 2.28 or newer; maturin checks the tags.
wheel:
	maturin build --release --zig --compatibility manylinux_2_28 --out dist
