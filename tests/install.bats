#!/usr/bin/env bats
# install.bats: `make install PREFIX= DESTDIR=` puts the tools, man pages,
# bash completion, systemd units and examples where they belong, the units
# naming the tools under PREFIX; `make uninstall` takes them all away; the
# installed demo runs on the installed tools; the completion offers each
# tool's options as its --help shows them.

load helpers

ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
TOOLS="aq-enqueue aq-worker aq-sweep aq-publish aq-subscribe aq-health aq-status aq-cancel aq-retry aq-queue aq-run"

setup() {
	cd "$BATS_TEST_TMPDIR"
	unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
	dest=$BATS_TEST_TMPDIR/dest
}

# install_to PREFIX [TARGET]: make TARGET (install) into $dest, with the tools
# this suite tests (-o all: they are built already, as they are).
install_to() {
	make -s -C "$ROOT" -o all BIN="$AQ_BIN" PREFIX="$1" DESTDIR="$dest" "${2:-install}"
}

@test "make install PREFIX=/usr DESTDIR=...: tools, man pages, completion, units and examples" {
	run install_to /usr
	assert_success
	for t in $TOOLS; do
		[ -x "$dest/usr/bin/$t" ]
		[ -f "$dest/usr/share/man/man1/$t.1" ]
		[ -f "$dest/usr/share/bash-completion/completions/$t" ]
	done
	[ -f "$dest/usr/share/man/man7/aq.7" ]
	for u in aq-worker@.service aq-sweep.service aq-sweep.timer \
	    aq-health-textfile.service aq-health-textfile.timer; do
		[ -f "$dest/usr/lib/systemd/system/$u" ]
	done
	[ -x "$dest/usr/share/aq/examples/demo" ]
	[ -x "$dest/usr/share/aq/examples/handlers/thumbnail.sh" ]
	[ -x "$dest/usr/share/aq/examples/pipeline/fan-out-in.sh" ]
	[ -f "$dest/usr/share/aq/examples/cron/aq-sweep.crontab" ]
	[ -f "$dest/usr/share/aq/examples/cron/aq-recurring.crontab" ]
	run "$dest/usr/bin/aq-worker" --version
	assert_success
	assert_output --partial 'aq-worker '
}

@test "the installed units and crontab run the tools under PREFIX, not /usr/local" {
	install_to /opt/aq
	run grep -h '^ExecStart=' "$dest"/opt/aq/lib/systemd/system/*.service
	assert_output --partial 'ExecStart=/opt/aq/bin/aq-worker -q %i'
	assert_output --partial '-- /opt/aq/libexec/aq/%i-handler'
	assert_output --partial 'ExecStart=/opt/aq/bin/aq-sweep'
	assert_output --partial '/opt/aq/bin/aq-health --prometheus'
	refute_output --partial /usr/local
	run grep -v '^#' "$dest/opt/aq/share/aq/examples/cron/aq-sweep.crontab"
	assert_output --partial ' /opt/aq/bin/aq-sweep'
	refute_output --partial /usr/local
	run grep -v '^#' "$dest/opt/aq/share/aq/examples/cron/aq-recurring.crontab"
	assert_output --partial ' /opt/aq/bin/aq-enqueue'
	refute_output --partial /usr/local
}

@test "make uninstall removes every file make install put there" {
	install_to /usr
	install_to /usr uninstall
	run find "$dest" -type f
	assert_output ''
}

@test "the installed demo runs on the installed tools" {
	install_to /usr
	# no aq tool but the installed ones on PATH
	PATH=$dest/usr/bin:/usr/bin:/bin run sh "$dest/usr/share/aq/examples/demo"
	assert_success
	assert_output --partial '{"status":"succeeded","attempt":1,"thumbnail":"thumbs/cat-128.jpg"}'
}

# complete TOOL WORD...: what the completion offers for the last WORD.
complete_words() {
	bash -c 'source "$1/completions/aq.bash"; shift
	    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _aq
	    printf "%s\n" "${COMPREPLY[@]}"' - "$ROOT" "$@"
}

@test "bash completion: every tool is offered every option its --help shows" {
	for t in $TOOLS; do
		run complete_words "$t" -
		assert_success
		for o in $("$t" --help 2>&1 | grep -o -e '--[a-z][a-z-]*' | sort -u); do
			assert_line "$o"
		done
		assert_line --help
		assert_line --version
		assert_line -q
		[ "$t" = aq-run ] || assert_line -u # aq-run reaches no Redis
	done
	run complete_words aq-worker --li
	assert_output --lines
}

@test "bash completion: files after a -file option, nothing after a value, commands after --" {
	touch url-file
	run complete_words aq-sweep --redis-url-file url-f
	assert_output url-file
	run complete_words aq-worker -q ''
	assert_output ''
	run complete_words aq-worker -c 2 -- bas
	assert_line bash
	run complete_words aq-worker -- sh url-f
	assert_output url-file
	run bash -c 'source "$1/completions/aq.bash"; complete -p aq-status' - "$ROOT"
	assert_output 'complete -F _aq aq-status'
}
