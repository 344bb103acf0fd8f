#!/usr/bin/env bats
# make.bats: the Makefile as a newcomer meets it: `make demo` and `make check`
# read their flags only after deps ran, a missing package stops the build
# naming it, `check` holds under -j, and `make clean` honours BUILD and BIN.
# Builds go to the test's temp dir, never to the tree's build/ or bin/.

load helpers

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

setup() {
	cd "$BATS_TEST_TMPDIR"
	# the make running this suite must not pass its own variables down
	unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
	unset AQ_REDIS_URL
	marker=$BATS_TEST_TMPDIR/installed
	# a pkg-config that knows nothing until "deps" has installed the packages
	cat >pkg-config <<-EOF
	#!/bin/sh
	[ -e "$marker" ] || exit 1
	exec pkg-config "\$@"
	EOF
	# deps: note the profile asked for, then "install" the packages
	cat >deps <<-EOF
	#!/bin/sh
	echo "\$1" >>"$BATS_TEST_TMPDIR/deps.log"
	touch "$marker"
	EOF
	chmod +x pkg-config deps
}

# mk ARGS...: make in the source tree, building into the temp dir, with the
# pkg-config and deps above, and neither this bats run's variables nor its
# libexec directory on PATH (a bats started by make check would take them for
# its own)
mk() {
	local v unset=() path
	for v in $(compgen -e | grep '^BATS_'); do unset+=(-u "$v"); done
	path=$(tr : '\n' <<<"$PATH" | grep -v bats-core | paste -sd:)
	env "${unset[@]}" PATH="$path" make -C "$ROOT" --no-print-directory BUILD="$BATS_TEST_TMPDIR/build" \
	    BIN="$BATS_TEST_TMPDIR/bin" CFLAGS=-O0 PKG_CONFIG="$BATS_TEST_TMPDIR/pkg-config" \
	    DEPS="$BATS_TEST_TMPDIR/deps" "$@"
}

@test "make demo on a machine without the packages: deps runs first, the flags are read after it, the demo runs" {
	run mk demo
	assert_success
	assert_equal "$(cat deps.log)" demo
	assert_output --partial 'a private redis-server (pid '
	assert_output --partial '"duplicate":true'
	[ -x bin/aq-worker ]
	refute_output --partial 'undefined reference'
}

@test "make -j4 check on a machine without the packages: deps, then the build, then the tests (TESTS= picks the bats files)" {
	printf '%s\n' '@test "the tools are built before the tests run" {' \
	    "	[ -x '$BATS_TEST_TMPDIR/bin/aq-enqueue' ]" '}' >tiny.bats
	run mk -j4 check TESTS="$BATS_TEST_TMPDIR/tiny.bats"
	assert_success
	assert_equal "$(cat deps.log)" check
	assert_line --regexp '^[0-9]+ passed, 0 failed$'
	assert_line --partial 'ok 1 the tools are built before the tests run'
}

@test "a package pkg-config cannot find stops the build naming it and its Debian package, before anything is compiled" {
	cat >pkg-config <<-'EOF'
	#!/bin/sh
	for a; do [ "$a" = jansson ] && exit 1; done
	exec pkg-config "$@"
	EOF
	run mk all
	assert_failure
	assert_output --partial 'does not find: jansson; install libjansson-dev'
	refute_output --partial 'undefined reference'
	refute_output --partial 'hiredis;'
	[ ! -e bin/aq-enqueue ]
	[ -z "$(find build -name '*.o' 2>/dev/null)" ]
}

@test "make clean removes BUILD and BIN, and nothing else" {
	mkdir -p build/x bin other
	touch build/x/a.o bin/aq-enqueue other/keep
	run mk clean
	assert_success
	[ ! -e build ]
	[ ! -e bin ]
	[ -e other/keep ]
}
