# mbgate - Modbus TCP/RTU to MQTT edge agent.
# make | make check | make demo | make deps [ARCH=...] | make install
# make deb [ARCH=...] | make deb-check | make cross-check | make bench

VERSION    := 0.1.0
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
DESTDIR    ?=
CC         ?= cc
PKG_CONFIG ?= pkg-config
PYTHON     ?= /usr/bin/python3

CFLAGS   ?= -O2 -g
B        ?= build

PKGS     := libmodbus libmosquitto libconfig sqlite3 jansson libsystemd libprotobuf-c
WARN     := -Wall -Wextra -Werror -Wno-format-truncation
ALL_CPPFLAGS := -D_GNU_SOURCE -DMBGATE_VERSION=\"$(VERSION)\" -Isrc \
                $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null) $(CPPFLAGS)
ALL_CFLAGS   := -std=gnu11 -pthread $(WARN) $(CFLAGS)
LIBS     := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lm -pthread

SRCS := $(wildcard src/*.c)
# Sparkplug B payloads: generated from the official .proto at build time.
GEN  := $(B)/gen/sparkplug_b.pb-c.c
OBJS := $(SRCS:src/%.c=$(B)/obj/%.o) $(B)/obj/sparkplug_b.pb-c.o

# Debian packages the build, the tests and the demo need.
DEPS_PKGS := build-essential pkg-config libmodbus-dev libmosquitto-dev \
  libconfig-dev libsqlite3-dev libjansson-dev libsystemd-dev libcmocka-dev \
  libprotobuf-c-dev protobuf-c-compiler \
  mosquitto mosquitto-clients python3-pytest python3-paho-mqtt \
  python3-pymodbus python3-serial python3-serial-asyncio python3-pytest-xdist \
  python3-protobuf protobuf-compiler mbpoll \
  socat sqlite3 clang libclang-rt-14-dev valgrind debhelper dpkg-dev fakeroot \
  lintian man-db systemd

# Packages for another Debian architecture: ARCH=arm64, ARCH=armhf or a list
# (default: this machine's). Cross builds use Debian's cross toolchain and
# the libraries' -dev packages of ARCH (multiarch; protobuf-c-compiler stays
# native), qemu user emulation runs the result (make cross-check).
BUILD_ARCH  := $(shell dpkg-architecture -qDEB_BUILD_ARCH 2>/dev/null)
ARCH        ?= $(shell dpkg-architecture -qDEB_HOST_ARCH 2>/dev/null)
CROSS_ARCHS ?= arm64 armhf
CROSS_DEV   := libmodbus-dev libmosquitto-dev libconfig-dev libsqlite3-dev \
  libjansson-dev libsystemd-dev libprotobuf-c-dev pkg-config
FOREIGN     := $(filter-out $(BUILD_ARCH),$(ARCH))
CROSS_PKGS  := $(foreach a,$(FOREIGN),crossbuild-essential-$(a) $(CROSS_DEV:%=%:$(a))) \
  $(if $(FOREIGN),qemu-user-static)

.PHONY: all check unit integration asan demo deps install clean deb deb-check cross-check
all: $(B)/mbgate

$(B)/mbgate: $(OBJS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS)

$(B)/obj/%.o: src/%.c | $(B)/obj $(GEN)
	$(CC) $(ALL_CPPFLAGS) -I$(B)/gen $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# the control test runs its idle-timeout case in 200 ms instead of 30 s
$(B)/obj/control_fastidle.o: src/control.c | $(B)/obj $(GEN)
	$(CC) $(ALL_CPPFLAGS) -DCONTROL_IDLE_MS=200 $(ALL_CFLAGS) -c -o $@ $<

$(GEN): src/sparkplug_b.proto | $(B)/gen
	protoc-c --c_out=$(B)/gen --proto_path=src src/sparkplug_b.proto

$(B)/obj/sparkplug_b.pb-c.o: $(GEN) | $(B)/obj
	$(CC) $(ALL_CPPFLAGS) -I$(B)/gen $(filter-out -Werror,$(ALL_CFLAGS)) -c -o $@ $<

$(B)/obj $(B)/unit $(B)/gen:
	mkdir -p $@

-include $(OBJS:.o=.d)

# Unit tests: tests/unit/test_X.c linked with the modules it exercises.
test_codec_DEPS    := codec
test_plan_DEPS     := plan
test_config_DEPS   := config codec plan
test_setpoint_DEPS := setpoint codec
test_payload_DEPS  := payload codec sample
test_control_DEPS  := control_fastidle codec setpoint config plan log payload sample
test_control_CPPFLAGS := -DCONTROL_IDLE_MS=200
test_spb_DEPS      := spb codec sparkplug_b.pb-c
test_store_DEPS    := store sample log
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_TESTS := $(UNIT_SRCS:tests/unit/%.c=$(B)/unit/%)

.SECONDEXPANSION:
$(B)/unit/%: tests/unit/%.c $$(addprefix $(B)/obj/,$$(addsuffix .o,$$($$*_DEPS))) | $(B)/unit
	$(CC) $(ALL_CPPFLAGS) -I$(B)/gen $($*_CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

unit: $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $$t; done

# The integration tests mostly wait (outages, backoffs), so they run in
# parallel; each starts its own processes on free ports.
PYTEST_JOBS ?= 4
integration: $(B)/mbgate
	cd tests/integration && MBGATE_BIN=$(abspath $(B)/mbgate) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider -n $(PYTEST_JOBS) $(PYTEST_ARGS) .

SAN := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
asan:
	MBGATE_TEST_SLOW=3 $(MAKE) B=build/asan CFLAGS="$(SAN)" LDFLAGS="$(SAN)" unit integration

check: deps
	$(MAKE) unit integration
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(MAKE) asan
	$(MAKE) tsan
	$(MAKE) fuzz-smoke

# packaging/deps.sh: a foreign ARCH is added to dpkg's architectures first,
# and removed again if installing fails (an architecture whose indexes do not
# download would make every later apt-get update fail). When the mirror's
# index of ARCH lags behind this machine's packages (Multi-Arch: same
# versions differ), it installs the matching version from the mirror's pool
# or, failing that, one version for all architectures (see its header).
deps:
	@packaging/deps.sh "$(ARCH)" $(DEPS_PKGS) $(CROSS_PKGS)

demo: deps all
	tests/demo/demo.sh

install: $(B)/mbgate
	install -D -m 0755 $(B)/mbgate $(DESTDIR)$(BINDIR)/mbgate

# Debian packages in build/, built in a staging copy (packaging/build-deb.sh):
# build/mbgate_$(VERSION)_<arch>.deb for each ARCH (cross builds: make deps
# ARCH=... first).
DEB_ARCH ?= $(ARCH)
deb:
	@set -e; for a in $(DEB_ARCH); do packaging/build-deb.sh $$a; done

deb-check: deps
	bash tests/packaging/test_deb.sh

# The CROSS_ARCHS packages cross-built, linted and smoke-tested under qemu
# (tests/packaging/cross_check.sh). An architecture whose packages cannot be
# installed fails there, the others are still checked.
cross-check:
	@for a in $(CROSS_ARCHS); do $(MAKE) --no-print-directory deps ARCH=$$a || echo "cross-check: make deps ARCH=$$a failed"; done
	bash tests/packaging/cross_check.sh $(CROSS_ARCHS)

# ---- performance (never part of make check): one table, build/bench/results.md
.PHONY: bench
bench: all
	tests/bench/run.sh

# ---- reliability suite (fuzzers, threads, soak)
.PHONY: fuzz fuzz-smoke tsan soak
FUZZ_SECONDS ?= 600
fuzz:
	tests/fuzz/run.sh $(FUZZ_SECONDS)
fuzz-smoke:
	tests/fuzz/run.sh smoke

# The threaded paths (polling, outages, kill -9) under ThreadSanitizer.
TSAN := -O1 -g -fsanitize=thread -fno-omit-frame-pointer
TSAN_RUN := TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(abspath tests/fuzz/tsan.supp)" \
  MBGATE_TEST_SLOW=3 MBGATE_BIN=$(abspath build/tsan/mbgate) $(PYTHON) -m pytest -q -p no:cacheprovider
tsan:
	$(MAKE) B=build/tsan CFLAGS="$(TSAN)" LDFLAGS="-fsanitize=thread" build/tsan/mbgate
	cd tests/integration && $(TSAN_RUN) -n $(PYTEST_JOBS) test_skeleton.py test_setpoints.py \
	  "test_outbox.py::test_kill9_during_outage_and_drain"

DURATION ?= 1800
soak: $(B)/mbgate
	nice -n 10 $(PYTHON) tests/soak/soak.py --duration $(DURATION) --bin $(abspath $(B)/mbgate)

clean:
	rm -rf build
