# Spacer: build, run, test, bench.  `make run` and `make test` are the two commands.
PKGS := libevent libevent_openssl libevent_pthreads libpq lua5.4 libcjson libjwt openssl libcrypt

CC      ?= cc
CFLAGS  := -std=c11 -D_DEFAULT_SOURCE -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -MMD -MP
LDLIBS  := -lhttp_parser -lpthread -lm  # http-parser has no pkg-config file
BUILD   := build

ifeq ($(SANITIZE),1)
CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
           -DSP_SANITIZE
LDFLAGS += -fsanitize=address,undefined
BUILD   := build/san
endif
ifeq ($(RELEASE),1)
CFLAGS  := $(filter-out -O2,$(CFLAGS)) -O3 -DNDEBUG
BUILD   := build/release
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SRCS      := $(wildcard core/*.c)
EMBEDS    := $(wildcard core/lua/*.lua)
OBJS      := $(SRCS:core/%.c=$(BUILD)/%.o)
LIB_OBJS  := $(filter-out $(BUILD)/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# Fuzz targets: each tests/fuzz/fuzz_NAME.c with its seed corpus in tests/fuzz/corpus/NAME/.
# `make test` replays the corpora through replay.c builds; `make fuzz` fuzzes with libFuzzer.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
REPLAY_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/replay/%)
FUZZ_CC      ?= clang
FUZZ_BUILD   := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := $(filter-out -O2,$(CFLAGS)) -O1 -fno-omit-frame-pointer -DSP_SANITIZE -DSP_FUZZ \
                -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OBJS    := $(LIB_OBJS:$(BUILD)/%=$(FUZZ_BUILD)/%)
FUZZ_BINS    := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

.PHONY: all spacer deps run test units replays fuzz fuzz-build bench check clean format db-start \
	db-stop

all: spacer

spacer: $(BUILD)/spacer
	@if [ "$(BUILD)" = build ]; then ln -sf $(BUILD)/spacer spacer; else rm -f spacer; cp $(BUILD)/spacer spacer; fi

$(BUILD)/spacer: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)

$(BUILD)/%.o: core/%.c | $(BUILD)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Icore -I$(BUILD) -c -o $@ $<

# Lua files the core carries inside the binary (the generic prelude).
$(BUILD)/embed.h: $(EMBEDS) tools/embed.sh | $(BUILD)
	sh tools/embed.sh $(EMBEDS) > $@
$(BUILD)/gen.o: $(BUILD)/embed.h

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS) | $(BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Icore -I$(BUILD) $(LDFLAGS) -o $@ $< $(LIB_OBJS) \
		$(PKG_LIBS) -lcmocka $(LDLIBS)

$(BUILD)/replay/%: tests/fuzz/%.c tests/fuzz/replay.c tests/fuzz/fuzz.h $(LIB_OBJS) | $(BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Icore -Itests/fuzz -I$(BUILD) $(LDFLAGS) -o $@ $< \
		tests/fuzz/replay.c $(LIB_OBJS) $(PKG_LIBS) $(LDLIBS)

$(FUZZ_BUILD)/%.o: core/%.c
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -Icore -I$(FUZZ_BUILD) \
		-c -o $@ $<
$(FUZZ_BUILD)/embed.h: $(EMBEDS) tools/embed.sh
	@mkdir -p $(FUZZ_BUILD)
	sh tools/embed.sh $(EMBEDS) > $@
$(FUZZ_BUILD)/gen.o: $(FUZZ_BUILD)/embed.h

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(PKG_CFLAGS) -Icore -Itests/fuzz -o $@ $< \
		$(FUZZ_OBJS) $(PKG_LIBS) $(LDLIBS)

$(BUILD):
	@mkdir -p $(BUILD)

deps:
	@sh tools/deps.sh

# Build, prepare the private development database, migrate, seed, serve.
run: deps
	@$(MAKE) --no-print-directory spacer
	@sh tools/devdb.sh up
	@sh tools/run.sh

# Every test: C unit tests, Lua script tests, black-box HTTP tests. Last line: N passed, N failed.
test: deps
	@$(MAKE) --no-print-directory spacer units replays
	@BUILD=$(BUILD) sh tools/test.sh

units: $(UNIT_BINS)

replays: $(REPLAY_BINS)

# Fuzz every target for FUZZ_SECONDS each (clang, libFuzzer, ASan + UBSan); says how to keep
# what it found. FUZZ=json runs one target.
fuzz-build: $(if $(FUZZ),$(FUZZ_BUILD)/fuzz_$(FUZZ),$(FUZZ_BINS))

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) sh tools/fuzz.sh $(FUZZ)

bench: deps
	@$(MAKE) --no-print-directory RELEASE=1 spacer
	@sh tools/bench.sh

check: spacer
	./spacer check

format:
	clang-format -i core/*.c core/*.h tests/unit/*.c

clean:
	rm -rf build spacer

-include $(OBJS:.o=.d) $(FUZZ_OBJS:.o=.d)
