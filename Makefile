# The two commands the README promises: `make run` and `make test`.
# Both install missing Debian packages first (apt-get; sudo when not root).

SHELL := /bin/bash
CARGO ?= cargo
ARGS ?=

.PHONY: run loopback serve test build deps test-deps bench lint

# What building and running the app needs.
deps:
	@.ci/deps.sh build run

# What the tests need besides: loopback namespace, Xvfb and screenshots, a virtual
# sound card, Chromium with playwright-core.
test-deps: deps
	@.ci/deps.sh test audio browser
	npm ci --prefix tests/browser --no-audit --no-fund

build: deps
	$(CARGO) build --release --locked

# The desktop app (pass e.g. ARGS="--server ws://host:8787/ws --room team").
run: deps
	$(CARGO) run --release --locked -- $(ARGS)

# A whole call on this machine, no window, no devices.
loopback: deps
	$(CARGO) run --release --locked -- loopback

serve: deps
	$(CARGO) run --release --locked -- serve $(ARGS)

# Builds with the network (crates, Chromium, playwright-core for the browser-guest
# tests), then runs every test in a namespace that only has loopback.
test: test-deps
	$(CARGO) build --tests --locked
	.ci/netns $(CARGO) test --offline --locked -- --color never 2>&1 | tee /tmp/confab-test.log; \
	  status=$${PIPESTATUS[0]}; \
	  echo "== cargo test summary =="; grep -E '^test result:' /tmp/confab-test.log || true; \
	  awk '/^test result:/ {p += $$4; f += $$6} END {print "total: " p " passed, " f " failed"}' /tmp/confab-test.log; \
	  exit $$status

bench: deps
	$(CARGO) build --release --locked
	.ci/netns $(CARGO) run --release --offline -- bench signaling --clients 10000 --rooms 1000 --seconds 10
	.ci/netns $(CARGO) run --release --offline -- bench call --seconds 20

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
