# Live View: `make run` and `make test` work on a fresh Debian machine with rustup's
# Rust and node/npm: each installs what it needs first, and only what is missing.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TRUNK_VERSION := 0.21.14
# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ { getline; gsub(/"/, "", $$3); print $$3; exit }' Cargo.lock)
TOOLS_BIN := $(CURDIR)/tools/node_modules/.bin
export PATH := $(TOOLS_BIN):$(HOME)/.cargo/bin:$(PATH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Building trunk and wasm-bindgen with their fat-LTO profiles takes twice as long for
# no benefit to us.
FAST_INSTALL := CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
ARGS ?=
# Read by liveview at run time (its --geoip-db and --world-atlas defaults are these paths).
GEO_DB := tools/node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb
WORLD_ATLAS := tools/node_modules/world-atlas/countries-110m.json

.PHONY: help setup setup-test build run test lint unit e2e fuzz clean cluster

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{ printf "  make %-10s %s\n", $$1, $$2 }'

setup: ## Install the build tools that are missing (wasm target, trunk, wasm-bindgen, wasm-opt) and the geography data
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
	@[ "$$(trunk --version 2>/dev/null)" = "trunk $(TRUNK_VERSION)" ] || \
	  { echo "installing trunk $(TRUNK_VERSION) (about 7 minutes, once)"; \
	    $(FAST_INSTALL) cargo install trunk --version $(TRUNK_VERSION) --locked; }
	@# Not --locked: wasm-bindgen-cli's own lockfile pins a crate version the registry lacks.
	@[ "$$(wasm-bindgen --version 2>/dev/null)" = "wasm-bindgen $(WASM_BINDGEN_VERSION)" ] || \
	  { echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (about 5 minutes, once)"; \
	    $(FAST_INSTALL) cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --force; }
	@[ -x $(TOOLS_BIN)/wasm-opt ] && [ -f $(GEO_DB) ] && [ -f $(WORLD_ATLAS) ] || npm ci --prefix tools --no-audit --no-fund

setup-test: setup ## Also install what the tests need (Debian's chromium, redis-server and postgresql, the Playwright packages)
	@missing=""; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  [ -z "$$missing" ] || { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $$missing; }
	@[ -d end2end/node_modules/@playwright/test ] || \
	  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix end2end --no-audit --no-fund

build: setup ## Build the SPA and the server in release (leaves target/release/liveview)
	trunk build --release --offline
	cargo build --release -p server

run: build ## Build, then start liveview on its defaults (pass flags with ARGS="...")
	./target/release/liveview $(ARGS)

cluster: build setup-test ## A local cluster: PostgreSQL, Redis, 1 lb, 3 app, 2 worker and 1 dashboard process; Ctrl-C stops it
	tools/cluster.sh

lint: setup ## cargo fmt --check, clippy -D warnings on the host crates and on the wasm frontend
	cargo fmt --all -- --check
	cargo clippy -p wire -p app -p server --all-targets -- -D warnings
	cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

# The integration tests that start the system and touch storage: `make unit` runs them
# on SQLite and again on PostgreSQL.
POSTGRES_TESTS = --test alerts --test analytics --test autoscale --test controllers --test inapp --test inbox --test live_stream --test mail --test messaging --test operators --test system --test telemetry

unit: setup-test ## Unit and integration tests (real listeners, real SQLite, a real Redis they start), then the storage-touching integration tests again on a real PostgreSQL each test starts
	cargo test -p wire -p app -p server
	LIVEVIEW_TEST_ENGINE=postgres cargo test -p server $(POSTGRES_TESTS)

e2e: setup-test build ## Playwright specs in Debian's Chromium against a fresh liveview
	cd end2end && npx playwright test

fuzz: build ## Fuzz a running liveview's HTTP APIs against their OpenAPI documents (schemathesis)
	BINARY=target/release/liveview tools/api-fuzz.sh

test: setup-test lint unit e2e fuzz ## Everything CI runs

clean: ## Remove build output and local tools
	cargo clean
	rm -rf dist tools/node_modules tools/venv end2end/node_modules end2end/test-results
