# Developer tasks. `make test` is what CI runs (after .ci/run installs the components).
.PHONY: run fmt clippy test bench

run:
	cargo run --release -- serve

fmt:
	cargo fmt --all

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

test:
	bash .ci/test

# The list benchmark of docs/BENCHMARKS.md, on SQLite; set BENCH_DB=postgres://... for PostgreSQL.
bench:
	cargo run --release -p alveole-bench -- list-sites --database-url "$${BENCH_DB:-sqlite://alveole-bench.db}"
