# The two commands the README promises: `make run` and `make test`.
# Both install missing Debian packages first (apt-get; sudo when not root).

SHELL := /bin/bash
CARGO ?= cargo
ARGS ?=

.PHONY: run display loopback serve test build deps test-deps interop-deps bench bench-network bench-rooms lint deb

# What building and running the app needs.
deps:
	@.ci/deps.sh build run

display:
	@if [ -z "$${DISPLAY:-}" ] && [ -z "$${WAYLAND_DISPLAY:-}" ]; then \
	  echo "make run: no display (neither DISPLAY nor WAYLAND_DISPLAY is set), so the app's window"; \
	  echo "cannot open. Run it from a desktop session or with 'ssh -X'. Without a display:"; \
	  echo "  make loopback   a whole call on this machine, no window, no devices"; \
	  echo "  make serve      the signaling server (and the browser guest page) on port 8787"; \
	  echo "  cargo run --release -- headless --help   a peer without a window"; \
	  exit 1; \
	fi

# What the tests need besides: loopback namespace, Xvfb and screenshots, a virtual
# sound card, Chromium with playwright-core, aiortc in a venv (tests/interop.rs).
test-deps: deps interop-deps
	@.ci/deps.sh test audio browser
	npm ci --prefix tests/browser --no-audit --no-fund

interop-deps:
	@.ci/deps.sh test
	@tests/interop/setup.sh

build: deps
	$(CARGO) build --release --locked

# The desktop app (pass e.g. ARGS="--server ws://host:8787/ws --room team").
# The display is checked first: the release build takes minutes.
run: display deps
	$(CARGO) run --release --locked -- $(ARGS)

# A Debian package of the release build, in target/debian (or $CARGO_TARGET_DIR/debian):
# install it with `sudo apt install ./target/debian/confab_*.deb`.
TARGET_DIR = $(or $(CARGO_TARGET_DIR),target)
deb: deps
	$(CARGO) build --release --locked
	@.ci/deb.sh $(TARGET_DIR)/release/confab $(TARGET_DIR)/debian

# A whole call on this machine, no window, no devices.
loopback: deps
	$(CARGO) run --release --locked -- loopback

serve: deps
	$(CARGO) run --release --locked -- serve $(ARGS)

# Builds with the network (crates, Chromium, playwright-core for the browser-guest
# tests), then runs every test target, even after a failure, in a namespace that only
# has loopback; the summary counts failed tests and targets that never reported.
TEST_LOG ?= /tmp/confab-test.log
test: test-deps
	$(CARGO) build --tests --locked
	.ci/netns $(CARGO) test --no-fail-fast --offline --locked -- --color never 2>&1 | tee $(TEST_LOG); \
	  .ci/test-summary $(TEST_LOG) $${PIPESTATUS[0]}

bench: deps
	$(CARGO) build --release --locked
	.ci/netns $(CARGO) run --release --offline -- bench signaling --clients 10000 --rooms 1000 --seconds 10
	.ci/netns $(CARGO) run --release --offline -- bench call --seconds 20
	.ci/netns $(CARGO) run --release --offline -- bench simulcast --frames 300

# Rooms of 2 to 8 as a mesh and through a Janus of the bench's own (about 3 minutes).
bench-rooms: deps
	@.ci/deps.sh test
	$(CARGO) build --release --locked
	.ci/netns $(CARGO) run --release --offline -- bench call --peers 2,4,6,8 --mode mesh,sfu --size 640x360 --seconds 15

# The call under each impairment profile (about 6 minutes; PROFILE=loss10 for one).
PROFILE ?=
bench-network: deps
	@.ci/deps.sh test
	$(CARGO) build --release --locked
	.ci/netns $(CARGO) run --release --offline -- bench network $(if $(PROFILE),--profile $(PROFILE))

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
