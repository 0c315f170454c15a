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

.PHONY: all spacer deps run test units bench check clean format db-start db-stop

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
	@$(MAKE) --no-print-directory spacer units
	@BUILD=$(BUILD) sh tools/test.sh

units: $(UNIT_BINS)

bench: deps
	@$(MAKE) --no-print-directory RELEASE=1 spacer
	@sh tools/bench.sh

check: spacer
	./spacer check

format:
	clang-format -i core/*.c core/*.h tests/unit/*.c

clean:
	rm -rf build spacer

-include $(OBJS:.o=.d)
