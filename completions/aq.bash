# aq.bash: bash completion for the aq tools. The options come from each
# tool's own --help, so they are never out of date; installed once per tool
# under share/bash-completion/completions (bash-completion loads it by name).

# _aq_options TOOL: the options TOOL's --help shows, one per line.
_aq_options() {
	"$1" --help 2>&1 | grep -o -e '--[a-z][a-z-]*' -e '\[-[a-z]' |
	    sed 's/^\[//' | sort -u
	printf '%s\n' --help --version
}

# _aq_takes_argument TOOL OPTION: OPTION is followed by a value in --help.
_aq_takes_argument() {
	"$1" --help 2>&1 | grep -q -e "$2 [a-z]"
}

_aq() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	local prev=${COMP_WORDS[COMP_CWORD-1]}
	local tool=${COMP_WORDS[0]} i
	COMPREPLY=()
	# aq-worker, aq-run ... -- CMD ARGS: complete a command, then its files
	for ((i = 1; i < COMP_CWORD; i++)); do
		if [[ ${COMP_WORDS[i]} == -- ]]; then
			if ((i == COMP_CWORD - 1)); then
				mapfile -t COMPREPLY < <(compgen -c -- "$cur")
			else
				mapfile -t COMPREPLY < <(compgen -f -- "$cur")
			fi
			return 0
		fi
	done
	case $prev in
	--redis-url-file | --database-url-file)
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return 0
		;;
	-*)
		# a value the user types (a queue, a duration, a URL): no guess
		_aq_takes_argument "$tool" "$prev" && return 0
		;;
	esac
	if [[ $cur == -* || -z $cur ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$(_aq_options "$tool")" -- "$cur")
	fi
	return 0
}

complete -F _aq aq-enqueue aq-worker aq-sweep aq-publish aq-subscribe \
    aq-health aq-status aq-cancel aq-retry aq-queue aq-run
