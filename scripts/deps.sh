#!/bin/sh
# deps.sh [build|demo|check]: make sure what aq needs to build, run the demo or
# run the whole test suite (the default) is here. As root on Debian it installs
# the missing packages; otherwise it names what to install and exits 69.
set -eu

profile=${1:-check}
case $profile in
build | demo | check) ;;
*)
	echo "usage: deps.sh [build|demo|check]" >&2
	exit 64
	;;
esac

missing=""
need() { # need PACKAGE TEST...
	pkg=$1
	shift
	"$@" >/dev/null 2>&1 || missing="$missing $pkg"
}
have_cmd() { command -v "$1"; }
have_pc() { pkg-config --exists "$1"; }
have_file() { test -e "$1"; }
have_initdb() { ls /usr/lib/postgresql/*/bin/initdb; }

check() {
	missing=""
	need build-essential have_cmd cc
	need build-essential have_cmd make
	need pkg-config have_cmd pkg-config
	need libhiredis-dev have_pc hiredis
	need libjansson-dev have_pc jansson
	need libuv1-dev have_pc libuv
	need libpq-dev have_pc libpq
	[ "$profile" = build ] && return
	need redis-server have_cmd redis-server
	need redis-tools have_cmd redis-cli
	need jq have_cmd jq
	[ "$profile" = demo ] && return
	need postgresql have_initdb
	need bats have_cmd bats
	need bats-support have_file /usr/lib/bats/bats-support/load.bash
	need bats-assert have_file /usr/lib/bats/bats-assert/load.bash
	need python3 have_cmd python3
	need mandoc have_cmd mandoc
	need time have_file /usr/bin/time
	need util-linux have_cmd flock
	need procps have_cmd pgrep
	need valgrind have_cmd valgrind
	need prometheus have_cmd promtool
	need systemd have_cmd systemd-analyze
	need stunnel4 have_cmd stunnel4
	need openssl have_cmd openssl
}

# apt-get names a package once however many tests asked for it
unique() { printf '%s\n' $missing | sort -u | tr '\n' ' '; }

check
[ -z "$missing" ] && exit 0
missing=$(unique)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "deps: installing what the $profile needs: $missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >&2
	check
	[ -z "$missing" ] && exit 0
	echo "deps: still missing after apt-get install: $(unique)" >&2
	exit 69
fi
echo "deps: the $profile needs packages that are not installed: $missing" >&2
echo "deps: install them with: sudo apt-get install $missing" >&2
exit 69
