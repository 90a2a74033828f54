# The two commands the README promises: `make run` and `make test`.
# Both install missing Debian packages first (apt-get; sudo when not root).

SHELL := /bin/bash
CARGO ?= cargo
ARGS ?=

.PHONY: run serve test build deps bench lint

deps:
	@.ci/deps.sh build test audio run

build: deps
	$(CARGO) build --release --locked

# Until the desktop app lands, `make run` shows a whole call on this machine.
run: deps
	$(CARGO) run --release --locked -- loopback $(ARGS)

serve: deps
	$(CARGO) run --release --locked -- serve $(ARGS)

# Builds with the network, then runs every test in a namespace that only has loopback.
test: deps
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
