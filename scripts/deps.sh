#!/bin/sh
# deps.sh: make sure what aq needs to build, test and demo is here. As root on
# Debian it installs the missing packages; otherwise it names what to install.
set -eu

missing=""
need() { # need PACKAGE TEST...
	pkg=$1
	shift
	"$@" >/dev/null 2>&1 || missing="$missing $pkg"
}
have_cmd() { command -v "$1"; }
have_pc() { pkg-config --exists "$1"; }
have_file() { test -e "$1"; }

check() {
	missing=""
	need build-essential have_cmd cc
	need pkg-config have_cmd pkg-config
	need libhiredis-dev have_pc hiredis
	need libjansson-dev have_pc jansson
	need libuv1-dev have_pc libuv
	need libpq-dev have_pc libpq
	need redis-server have_cmd redis-server
	need redis-tools have_cmd redis-cli
	need bats have_cmd bats
	need bats-support have_file /usr/lib/bats/bats-support/load.bash
	need bats-assert have_file /usr/lib/bats/bats-assert/load.bash
	need jq have_cmd jq
	need python3 have_cmd python3
	need mandoc have_cmd mandoc
	need time have_file /usr/bin/time
	need postgresql have_file /usr/lib/postgresql
}

check
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "deps: installing:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >&2
	check
	[ -z "$missing" ] && exit 0
	echo "deps: still missing after apt-get install:$missing" >&2
	exit 69
fi
echo "deps: missing:$missing" >&2
echo "deps: install them with: sudo apt-get install$missing" >&2
exit 69
