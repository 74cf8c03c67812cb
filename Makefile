# ftvm: the two commands a new user needs are `make demo` and `make test`.
# Every target installs what it needs by itself.

.PHONY: all setup build etcd chromium redis-tools toolchains guests test typecheck bench demo clean
.DELETE_ON_ERROR:

NPM_STAMP := node_modules/.ftvm-installed
FTVM := node host/cli/ftvm.mjs

all: test

# Node.js >= 20 comes with the machine; npm packages come from the lock file.
setup: $(NPM_STAMP) build
$(NPM_STAMP): package.json package-lock.json
	@node -e 'const [a]=process.versions.node.split(".").map(Number); if (a < 20) { console.error("ftvm needs Node.js >= 20, found " + process.version); process.exit(1) }'
	npm ci --no-audit --no-fund
	@touch $@

# The host's TypeScript built into JavaScript (dist/), so the command line
# starts without transpiling. A no-op when dist/ is current; `ftvm` also
# rebuilds it by itself when a source changed (host/build.mjs says how).
build: $(NPM_STAMP)
	node host/build.mjs

# The arbiter tests run a real etcd server (Debian's etcd-server, 3.4); each
# test starts its own on free ports, so no system service is needed.
SUDO := $(shell if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then echo sudo; fi)
etcd:
	@if command -v etcd >/dev/null 2>&1; then :; else \
	  echo "etcd missing; installing etcd-server"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server; \
	fi

# The --tcplisten tests (test/tcp-listen.test.ts) drive the http sample with curl
# and the kvresp sample with Debian's redis-cli and redis-benchmark (redis-tools).
redis-tools:
	@missing=""; \
	command -v redis-cli >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1 || missing="$$missing redis-tools"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
	  echo "missing:$$missing; installing"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The status page's test drives Debian's Chromium headless (through playwright-core).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; else \
	  echo "chromium missing; installing chromium"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi

# The real-program tests (test/real-programs.test.ts) build C and Rust programs at
# test time, for wasm32-wasi and natively, with Debian's compilers: clang, wasm-ld,
# wasi-libc and wasm32 compiler-rt for C; rustc 1.63 with its wasm32-wasi std for Rust.
TOOLCHAIN_PACKAGES := clang lld wasi-libc libclang-rt-14-dev-wasm32 libc6-dev gcc rustc libstd-rust-dev-wasm32
toolchains:
	@missing=""; for p in $(TOOLCHAIN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "toolchains missing:$$missing; installing"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# Rebuilds the committed guest samples (installs clang, lld and wasi-libc from Debian when missing).
guests: setup
	$(MAKE) -C wasm-src

typecheck: setup
	npx tsc --noEmit -p host

test: typecheck etcd chromium redis-tools toolchains
	npx vitest run

bench: setup
	$(FTVM) bench meter

demo: setup
	$(FTVM) demo

clean:
	rm -rf .cache dist
