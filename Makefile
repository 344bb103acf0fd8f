# Makefile: builds the tools into bin/, runs the suites, installs.
# `make demo` and `make check` first install (or name) what is missing, then
# build; `make asan` builds with ASan+UBSan and runs the suite.

VERSION    = 0.1.0
PREFIX    ?= /usr/local
MANDIR    ?= $(PREFIX)/share/man
CC        ?= cc
PKG_CONFIG ?= pkg-config
DEPS      ?= sh scripts/deps.sh
BUILD     ?= build
BIN       ?= bin

# The pkg-config packages the build needs, each with its Debian package.
PKGS       = hiredis jansson libuv libpq
LINK_PKGS  = hiredis jansson libuv  # libpq is loaded when used (common/pq.c)
deb_hiredis = libhiredis-dev
deb_libpq   = libpq-dev
deb_jansson = libjansson-dev
deb_libuv   = libuv1-dev

# Flags are read from pkg-config the first time a recipe needs them, not when
# the Makefile is parsed: `make demo` and `make check` install the packages
# before anything is compiled. A missing package stops the build naming it.
pkg_missing = $(strip $(foreach p,$(PKGS),$(if $(shell $(PKG_CONFIG) --exists $(p) 2>/dev/null && echo y),,$(p))))
pkg_query = $(if $(pkg_missing),$(error pkg-config ($(PKG_CONFIG)) does not find: $(pkg_missing); \
    install $(foreach p,$(pkg_missing),$(deb_$(p))) or run `make deps`),$(shell $(PKG_CONFIG) $(1) $(2)))
PKG_CFLAGS = $(eval PKG_CFLAGS := $(call pkg_query,--cflags,$(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $(call pkg_query,--libs,$(LINK_PKGS)) -ldl)$(PKG_LIBS)

CFLAGS   ?= -O2 -g
override CFLAGS += -std=c11 -Wall -Wextra -Werror -D_DEFAULT_SOURCE \
            -DAQ_VERSION='"$(VERSION)"' -Icommon -I$(BUILD) $(PKG_CFLAGS) $(SAN)
override LDLIBS += $(PKG_LIBS)
override LDFLAGS += -Wl,--as-needed $(SAN)

TOOLS    = aq-enqueue aq-status aq-cancel aq-retry aq-queue aq-worker aq-sweep aq-publish \
           aq-subscribe aq-health aq-run
COMMON   = $(patsubst common/%.c,$(BUILD)/%.o,$(wildcard common/*.c)) $(BUILD)/scripts.o
LUA      = $(wildcard common/lua/*.lua)
HEADERS  = $(wildcard common/*.h)
MAN      = $(wildcard man/*.1 man/*.7)

all: $(addprefix $(BIN)/,$(TOOLS)) $(BUILD)/unit

$(BUILD):
	mkdir -p $(BUILD)
$(BIN):
	mkdir -p $(BIN)

$(BUILD)/scripts.c: scripts/embed-lua.sh $(LUA) | $(BUILD)
	sh scripts/embed-lua.sh $(LUA) > $@.tmp && mv $@.tmp $@

$(BUILD)/%.o: common/%.c $(HEADERS) | $(BUILD)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
$(BUILD)/scripts.o: $(BUILD)/scripts.c common/script.h
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
$(BUILD)/libaq.a: $(COMMON)
	$(AR) rcs $@ $(COMMON)

$(BIN)/%: tools/%.c $(BUILD)/libaq.a $(HEADERS) | $(BIN)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libaq.a $(LDLIBS)

$(BUILD)/unit: tests/unit.c $(BUILD)/libaq.a $(HEADERS)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libaq.a $(LDLIBS)

# What the build, the demo or the suite needs: installed as root, else named.
deps:
	$(DEPS) check

# The whole suite: C unit tests and the bats files (or TESTS=FILE.bats...),
# one summary line. One recipe, in order, so that -j cannot build before deps
# or test before the build.
check:
	$(DEPS) check
	$(MAKE) all
	AQ_BIN=$(abspath $(BIN)) AQ_UNIT=$(abspath $(BUILD))/unit sh tests/run $(TESTS)

asan:
	AQ_SANITIZED=1 $(MAKE) BUILD=build/asan BIN=build/asan/bin \
	    CFLAGS='-O1 -g -fno-omit-frame-pointer' \
	    SAN='-fsanitize=address,undefined -fno-sanitize-recover=all' check

demo:
	$(DEPS) demo
	$(MAKE) all
	AQ_BIN=$(abspath $(BIN)) sh examples/demo

# The benchmarks, one after the other (figures, not pass/fail; see bench/README.md).
BENCHES ?= enqueue worker sweep stream health ledger replicas cluster
bench: all
	for b in $(BENCHES); do AQ_BIN=$(abspath $(BIN)) sh bench/$$b || exit 1; done

# libFuzzer over the parsers of untrusted input, FUZZ_SECONDS long (clang).
FUZZ_SECONDS ?= 30
fuzz:
	$(MAKE) CC=clang BUILD=build/fuzz BIN=build/fuzz/bin CFLAGS='-O1 -g' \
	    SAN='-fsanitize=fuzzer-no-link,address,undefined' build/fuzz/libaq.a
	clang -O1 -g -std=c11 -D_DEFAULT_SOURCE -Icommon -fsanitize=fuzzer,address,undefined \
	    -o build/fuzz/fuzz tests/fuzz/fuzz.c build/fuzz/libaq.a $(PKG_LIBS)
	mkdir -p build/fuzz/corpus
	build/fuzz/fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -dict=tests/fuzz/dict build/fuzz/corpus tests/fuzz/seeds

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
	    --inline-suppr --suppress=missingIncludeSystem -Icommon common tools tests/unit.c
	for m in $(MAN); do mandoc -Tlint -Wwarning $$m || exit 1; done

# Installs the tools, man pages, bash completion, systemd units (not enabled)
# and examples. The units and the crontab name the tools under $(PREFIX).
BINDIR     ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec
DATADIR    ?= $(PREFIX)/share/aq
COMPDIR    ?= $(PREFIX)/share/bash-completion/completions
UNITDIR    ?= $(PREFIX)/lib/systemd/system
at_prefix   = sed -e 's\#/usr/local/bin/\#$(BINDIR)/\#g' -e 's\#/usr/local/libexec/\#$(LIBEXECDIR)/\#g'
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7 \
	    $(DESTDIR)$(COMPDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DATADIR)/examples/cron \
	    $(DESTDIR)$(DATADIR)/examples/handlers $(DESTDIR)$(DATADIR)/examples/sse \
	    $(DESTDIR)$(DATADIR)/examples/pipeline
	install -m 755 $(addprefix $(BIN)/,$(TOOLS)) $(DESTDIR)$(BINDIR)/
	install -m 644 man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/*.7 $(DESTDIR)$(MANDIR)/man7/
	for t in $(TOOLS); do install -m 644 completions/aq.bash $(DESTDIR)$(COMPDIR)/$$t || exit 1; done
	for u in examples/systemd/*; do $(at_prefix) $$u > $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; done
	chmod 644 $(DESTDIR)$(UNITDIR)/*
	for c in examples/cron/*.crontab; do $(at_prefix) $$c > $(DESTDIR)$(DATADIR)/examples/cron/$${c##*/} || exit 1; done
	install -m 755 examples/demo $(DESTDIR)$(DATADIR)/examples/
	install -m 755 examples/handlers/* $(DESTDIR)$(DATADIR)/examples/handlers/
	install -m 755 examples/sse/* $(DESTDIR)$(DATADIR)/examples/sse/
	install -m 755 examples/pipeline/* $(DESTDIR)$(DATADIR)/examples/pipeline/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(TOOLS)) $(addprefix $(DESTDIR)$(COMPDIR)/,$(TOOLS))
	for m in $(MAN); do rm -f $(DESTDIR)$(MANDIR)/man$${m##*.}/$${m##*/}; done
	for u in examples/systemd/*; do rm -f $(DESTDIR)$(UNITDIR)/$${u##*/}; done
	rm -rf $(DESTDIR)$(DATADIR)

clean:
	rm -rf $(BUILD) $(BIN)

.PHONY: all deps check asan demo bench fuzz lint install uninstall clean
