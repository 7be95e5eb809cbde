# mirrorfs / mirrord
#   make            build build/mirrorfs and build/mirrord
#   make deps       install missing Debian packages (apt-get)
#   make test       unit + integration tests  (SANITIZE=1 for ASan+UBSan)
#   make demo       end-to-end demonstration on loopback

CC      ?= cc
BUILD   := build
PKGS_COMMON := libcjson libsodium libzstd
PKGS_FUSE   := fuse3 libcurl sqlite3
PKGS_SERVER := libmicrohttpd sqlite3

CFLAGS_BASE := -std=gnu11 -Itests/unit -Wall -Wextra -Werror -O2 -g -D_FILE_OFFSET_BITS=64 \
	-D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE -pthread -Icommon
LDFLAGS_BASE := -pie -Wl,-z,relro,-z,now -pthread

ifeq ($(SANITIZE),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -U_FORTIFY_SOURCE -O1
LDFLAGS_BASE += -fsanitize=address,undefined
BUILD := build-san
endif

pc_cflags = $(shell pkg-config --cflags $(1) 2>/dev/null)
pc_libs   = $(shell pkg-config --libs $(1) 2>/dev/null)

COMMON_SRC := $(wildcard common/*.c)
SERVER_SRC := $(wildcard server/*.c)
FUSE_SRC   := $(wildcard fuse/*.c)
UNIT_SRC   := $(wildcard tests/unit/*.c)

COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/obj/%.o)
FUSE_OBJ   := $(FUSE_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_OBJ   := $(UNIT_SRC:%.c=$(BUILD)/obj/%.o)

CFLAGS_ALL := $(CFLAGS_BASE) $(call pc_cflags,$(PKGS_COMMON) $(PKGS_FUSE) $(PKGS_SERVER)) $(CFLAGS)
LIBS_COMMON := $(call pc_libs,$(PKGS_COMMON))
LIBS_SERVER := $(call pc_libs,$(PKGS_SERVER)) $(LIBS_COMMON)
LIBS_FUSE   := $(call pc_libs,$(PKGS_FUSE)) $(LIBS_COMMON)

all: $(BUILD)/mirrorfs $(BUILD)/mirrord $(BUILD)/treecmp
ifneq ($(BUILD),build)
	@mkdir -p build && for f in mirrorfs mirrord treecmp; do ln -sf ../$(BUILD)/$$f build/$$f; done
endif

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libcommon.a: $(COMMON_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/mirrord: $(SERVER_OBJ) $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS_BASE) -o $@ $^ $(LIBS_SERVER)

$(BUILD)/mirrorfs: $(FUSE_OBJ) $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS_BASE) -o $@ $^ $(LIBS_FUSE)

$(BUILD)/treecmp: $(BUILD)/obj/tests/tools/treecmp.o $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS_BASE) -o $@ $^ $(LIBS_COMMON)

# Unit tests link every module except the two main.c files.
$(BUILD)/unit-tests: $(UNIT_OBJ) $(filter-out %/main.o,$(SERVER_OBJ) $(FUSE_OBJ)) $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS_BASE) -o $@ $^ -lcunit $(call pc_libs,$(PKGS_FUSE) $(PKGS_SERVER)) $(LIBS_COMMON)

DEPS_APT := build-essential pkg-config perl libfuse3-dev fuse3 libcurl4-openssl-dev libcjson-dev \
	libsodium-dev libcunit1-dev libmicrohttpd-dev libsqlite3-dev libzstd-dev sqlite3 curl \
	rsync bindfs fio

deps:
	@missing=""; for p in $(DEPS_APT); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all installed"; else \
		echo "deps: installing:$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then echo "deps: run 'make deps' as root to install them" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# test and demo first install what is missing (a no-op when all is there),
# then build in a sub-make so that pkg-config sees the new packages.
test: deps
	$(MAKE) all $(BUILD)/unit-tests
	$(BUILD)/unit-tests
	BUILD=$(BUILD) tests/integration/run.sh

test-unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

demo: deps
	$(MAKE) all
	tests/demo.sh

# Benchmarks (timings never live in pass/fail tests).
bench: all
	bench/bench.sh

bench-wire: all
	bench/bench_wire.sh

bench-reconcile: all
	bench/bench_reconcile.sh

clean:
	rm -rf build build-san

.PHONY: all deps test test-unit demo clean bench bench-wire bench-reconcile

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
