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

# FUSE is optional: without libfuse3 only the polling client is built.
HAVE_FUSE := $(shell pkg-config --exists fuse3 2>/dev/null && echo 1)

COMMON_SRC := $(wildcard common/*.c)
SERVER_SRC := $(wildcard server/*.c)
# The client: front ends (FUSE: fs.c, kio.c, main.c; polling: poll_*.c) over shared
# modules that must not include FUSE headers (they are compiled without them).
FUSE_ONLY_SRC := fuse/fs.c fuse/kio.c fuse/main.c
POLL_ONLY_SRC := $(wildcard fuse/poll_*.c)
CLIENT_SRC := $(filter-out $(FUSE_ONLY_SRC) $(POLL_ONLY_SRC),$(wildcard fuse/*.c))
UNIT_SRC   := $(wildcard tests/unit/*.c)

obj = $(1:%.c=$(BUILD)/obj/%.o)
COMMON_OBJ := $(call obj,$(COMMON_SRC))
SERVER_OBJ := $(call obj,$(SERVER_SRC))
FUSE_ONLY_OBJ := $(call obj,$(FUSE_ONLY_SRC))
POLL_ONLY_OBJ := $(call obj,$(POLL_ONLY_SRC))
CLIENT_OBJ := $(call obj,$(CLIENT_SRC))
UNIT_OBJ   := $(call obj,$(UNIT_SRC))

PKGS_CLIENT := libcurl sqlite3
CFLAGS_ALL := $(CFLAGS_BASE) $(call pc_cflags,$(PKGS_COMMON) $(PKGS_CLIENT) $(PKGS_SERVER)) $(CFLAGS)
CFLAGS_FUSE := $(CFLAGS_ALL) $(call pc_cflags,fuse3)
LIBS_COMMON := $(call pc_libs,$(PKGS_COMMON))
LIBS_SERVER := $(call pc_libs,$(PKGS_SERVER)) $(LIBS_COMMON)
LIBS_CLIENT := $(call pc_libs,$(PKGS_CLIENT)) $(LIBS_COMMON)
LIBS_FUSE   := $(call pc_libs,fuse3) $(LIBS_CLIENT)

PROGS := mirrord treecmp fsop $(if $(POLL_ONLY_SRC),mirrorfs-poll) $(if $(HAVE_FUSE),mirrorfs)

# A build elsewhere (SANITIZE=1, BUILD=dir) leaves build/PROG as a link to
# its binary, which make would take for an up-to-date target of this one:
# such links are dropped before a default build.
ifeq ($(BUILD),build)
$(foreach p,$(PROGS),$(if $(shell test -L build/$(p) && echo y),$(shell rm -f build/$(p))))
endif

all: $(PROGS:%=$(BUILD)/%)
ifeq ($(HAVE_FUSE),)
	@echo "note: libfuse3 not found (pkg-config fuse3): built the polling client only"
endif
ifneq ($(BUILD),build)
	@mkdir -p build && for f in $(PROGS); do ln -sfn $(abspath $(BUILD))/$$f build/$$f; done
endif

poll: $(BUILD)/mirrorfs-poll $(BUILD)/mirrord

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# Only the FUSE front end sees the FUSE headers.
$(FUSE_ONLY_OBJ): $(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_FUSE) -MMD -MP -c $< -o $@

$(BUILD)/libcommon.a: $(COMMON_OBJ)
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/mirrord: $(SERVER_OBJ) $(BUILD)/libcommon.a
	@echo "  LD      $@"
	@rm -f $@ && $(CC) $(LDFLAGS_BASE) -o $@ $^ $(LIBS_SERVER)

$(BUILD)/mirrorfs: $(FUSE_ONLY_OBJ) $(CLIENT_OBJ) $(BUILD)/libcommon.a
	@echo "  LD      $@"
	@rm -f $@ && $(CC) $(LDFLAGS_BASE) -o $@ $^ $(LIBS_FUSE)

$(BUILD)/mirrorfs-poll: $(POLL_ONLY_OBJ) $(CLIENT_OBJ) $(BUILD)/libcommon.a
	@echo "  LD      $@"
	@rm -f $@ && $(CC) $(LDFLAGS_BASE) -o $@ $^ $(LIBS_CLIENT)

$(BUILD)/treecmp: $(BUILD)/obj/tests/tools/treecmp.o $(BUILD)/libcommon.a
	@rm -f $@ && $(CC) $(LDFLAGS_BASE) -o $@ $^ $(LIBS_COMMON)

$(BUILD)/fsop: $(BUILD)/obj/tests/tools/fsop.o
	@rm -f $@ && $(CC) $(LDFLAGS_BASE) -o $@ $^

# Unit tests link every module but the front ends' main programs.
$(BUILD)/unit-tests: $(UNIT_OBJ) $(filter-out %/main.o,$(SERVER_OBJ)) $(CLIENT_OBJ) $(BUILD)/libcommon.a
	@echo "  LD      $@"
	@rm -f $@ && $(CC) $(LDFLAGS_BASE) -o $@ $^ -lcunit $(LIBS_CLIENT) $(LIBS_SERVER)

DEPS_APT := build-essential pkg-config perl libfuse3-dev fuse3 libcurl4-openssl-dev libcjson-dev \
	libsodium-dev libcunit1-dev libmicrohttpd-dev libsqlite3-dev libzstd-dev sqlite3 curl \
	rsync bindfs fio dpkg-dev groff-base man-db systemd strace openssl xxd zstd clang

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

bench-chunks:
	bench/bench_chunks.sh

clean:
	rm -rf build build-san

.PHONY: poll all deps test test-unit demo clean bench bench-wire bench-reconcile bench-chunks

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# Targets owned by their folders: make deb/install/uninstall/test-package
# (packaging/packaging.mk) and make fuzz (fuzz/fuzz.mk).
-include packaging/packaging.mk
-include fuzz/fuzz.mk
