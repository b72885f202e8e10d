# mcpvisor — build, run, check, install.
#
#   make run      install missing packages, build, start the demo
#   make check    install missing packages, build, run every test suite (also under ASan+UBSan)
#   make fuzz     the libFuzzer targets, FUZZ_SECONDS (300) each

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc

PKGS      := libevent libevent_openssl libcjson openssl libseccomp libcap libpcre2-8
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  ?= -O2 -g
SAN     ?=
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE $(PKG_CFLAGS) -Isupervisor -Isandbox
ALL_CFLAGS = $(CFLAGS) $(SAN) $(BASE_CFLAGS)
# Test servers, probes and the demo server are helpers, not the product: built without the
# sanitizers (a sandboxed child under RLIMIT_AS cannot carry ASan's shadow memory).
HELPER_CFLAGS = $(CFLAGS) $(BASE_CFLAGS)
BASE_LDFLAGS = -pie -Wl,-z,relro,-z,now
ALL_LDFLAGS = $(LDFLAGS) $(SAN) $(BASE_LDFLAGS)
LDLIBS  += $(PKG_LIBS) -pthread

# Debian packages the build and the test suites need (checked by `make deps`; libclang-rt-dev holds
# libFuzzer, which clang only recommends); Node.js and npm (interop tests) are checked as
# commands, since they may come from another packaging of Node.
DEB_PKGS := gcc make pkg-config libevent-dev libcjson-dev libssl-dev libseccomp-dev libcap-dev \
            libcmocka-dev libpcre2-dev python3-pytest python3-jwt python3-cryptography clang-format \
            apache2-utils json-schema-test-suite clang libclang-rt-dev

LIB_SRC  := $(filter-out supervisor/main.c,$(wildcard supervisor/*.c sandbox/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/supervisor/main.o
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
SERVER_SRC := $(wildcard tests/servers/*.c)
SERVER_BIN := $(SERVER_SRC:tests/servers/%.c=$(BUILD)/tests/servers/%)
PROBE_SRC := $(wildcard tests/probes/*.c)
PROBE_BIN := $(PROBE_SRC:tests/probes/%.c=$(BUILD)/tests/probes/%)
DEMO_BIN := $(BUILD)/demo-server
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)

.PHONY: all deps run check unit integration interop asan asan-check style format install clean bench \
	bench-audit bench-pool fuzz fuzz-build fuzz-check

all: $(BUILD)/mcpvisor $(DEMO_BIN) $(SERVER_BIN) $(PROBE_BIN)

$(BUILD)/%.o: %.c $(wildcard supervisor/*.h sandbox/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/mcpvisor: $(MAIN_OBJ) $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(DEMO_BIN): manifests/demo/demo-server.c
	@mkdir -p $(dir $@)
	$(CC) $(HELPER_CFLAGS) $(LDFLAGS) $(BASE_LDFLAGS) -o $@ $< $(LDLIBS)

$(BUILD)/tests/servers/%: tests/servers/%.c
	@mkdir -p $(dir $@)
	$(CC) $(HELPER_CFLAGS) $(LDFLAGS) $(BASE_LDFLAGS) -o $@ $< $(LDLIBS)

$(BUILD)/tests/probes/%: tests/probes/%.c
	@mkdir -p $(dir $@)
	$(CC) $(HELPER_CFLAGS) $(LDFLAGS) $(BASE_LDFLAGS) -o $@ $< -lpthread

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(UNIT_LDFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS) -lcmocka

# The torture test fails the library's Nth allocation: its malloc family goes through wrappers.
$(BUILD)/tests/unit/test_torture: UNIT_LDFLAGS = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc \
	-Wl,--wrap=strdup,--wrap=strndup

$(BUILD)/tests/fuzz/%: tests/fuzz/%.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer $(ALL_LDFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS)

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "deps: installing$$missing"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	    else \
	        echo "deps: missing Debian packages; run:"; \
	        echo "    sudo apt-get install -y$$missing"; exit 1; \
	    fi; \
	fi

run: deps all
	@./manifests/demo/run.sh $(BUILD)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; ./$$t; done

integration: all
	MCPVISOR_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

interop: all
	MCPVISOR_BUILD=$(abspath $(BUILD)) ./tests/interop/run.sh

style:
	@./tests/style.sh

format:
	clang-format -i supervisor/*.[ch] sandbox/*.[ch] tests/unit/*.c tests/servers/*.c tests/probes/*.c \
	    tests/fuzz/*.c manifests/demo/*.c

# ASan+UBSan build of the daemon, the servers and the unit tests, in its own folder. Every make
# into build-asan passes the same flags, so nothing there is ever rebuilt without them.
ASAN_VARS := BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
asan:
	$(MAKE) $(ASAN_VARS) all $(UNIT_BIN:$(BUILD)/%=build-asan/%)

asan-check: asan
	$(MAKE) $(ASAN_VARS) unit
	MCPVISOR_BUILD=$(abspath build-asan) MCPVISOR_ASAN=1 /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

# libFuzzer targets (tests/fuzz/fuzz_*.c) over the library objects, built by clang with coverage,
# ASan and UBSan in their own folder. Each target starts from its seeds in tests/fuzz/corpus/
# and keeps what it finds in build-fuzz/corpus/; a crash, leak, hang or OOM fails the run and
# leaves the input in build-fuzz/artifacts/. `make fuzz` runs each for FUZZ_SECONDS; `check` runs
# each for 18 s (fuzz-check), which also replays every seed.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 300
FUZZ_VARS := BUILD=build-fuzz CC=$(FUZZ_CC) CFLAGS="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
fuzz-build:
	$(MAKE) $(FUZZ_VARS) $(FUZZ_BIN:$(BUILD)/%=build-fuzz/%)

fuzz: deps fuzz-build
	./tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

fuzz-check: fuzz-build
	./tests/fuzz/run.sh build-fuzz $(if $(filter command line environment,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),18)

check: deps
	$(MAKE) all
	$(MAKE) style
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) interop
	$(MAKE) asan-check
	$(MAKE) fuzz-check

# Figures, not pass/fail: calls/s and latency (ApacheBench), spawn time, memory per session.
bench: deps all
	/usr/bin/python3 tests/bench/bench.py $(BUILD)

# The audit log's cost alone: calls/s and latency with sync none, batch and always.
bench-audit: deps all
	/usr/bin/python3 tests/bench/bench.py $(BUILD) audit

# Isolation modes alone: sessions/s, memory for 1,000 open sessions and calls/s in each.
bench-pool: deps all
	/usr/bin/python3 tests/bench/bench.py $(BUILD) pool

install: all
	install -D -m 0755 $(BUILD)/mcpvisor $(DESTDIR)$(PREFIX)/bin/mcpvisor
	install -D -m 0644 systemd/mcpvisor.service $(DESTDIR)$(PREFIX)/lib/systemd/system/mcpvisor.service
	install -D -m 0644 systemd/mcpvisor.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/mcpvisor.conf
	install -D -m 0644 systemd/mcpvisor.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/mcpvisor.conf

clean:
	rm -rf build build-asan build-fuzz
