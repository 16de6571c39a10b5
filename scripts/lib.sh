# scripts/lib.sh: what scripts/bench.sh and scripts/soak.sh share; they
# source it by its path from their own, so that they run from any
# directory. It is not run itself. The script sets LOG_TAG (the name its
# log lines carry) before it logs, and WORK, KEEP, HOST, IPMI_USER and
# IPMI_PASS before it calls the functions that use them.

# progress and errors go to stderr, stdout being the script's report
log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

check_int() { # name value max
	if ! [[ $2 =~ ^[1-9][0-9]*$ ]] || (($2 > $3)); then
		die "$1 must be an integer in 1..$3 (got '$2')"
	fi
}

# FUNC runs when the script exits, also on INT and TERM (exit status 130,
# 143); FUNC starts with `trap - EXIT INT TERM` and ends with finish_work
on_exit() { # func
	trap "$1" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# removes $WORK, or with KEEP=1 says where it is (its logs), and exits
finish_work() { # exit-status
	if [[ $KEEP == 1 ]]; then
		log "logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$1"
}

# PID and all its descendants
tree_pids() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1" 2>/dev/null || true); do
		tree_pids "$c"
	done
}

# TERM to PID, KILL once it has lived TRIES times 0.2 s more, and reaped;
# nothing for an empty PID
stop_pid() { # pid tries
	local i
	[[ -n $1 ]] || return 0
	kill "$1" 2>/dev/null || true
	for ((i = 0; i < $2; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.2
	done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# 0 once the BMC on HOST:PORT answers `ipmitool -I lanplus [ARGS] power
# status`, tried 40 times 0.25 s apart; 1 if it never does or PID, the
# process serving it, exits first
wait_bmc() { # port pid [ipmitool-args...]
	local port=$1 pid=$2 i
	shift 2
	for ((i = 0; i < 40; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		if timeout -k 1 5 ipmitool -I lanplus -H "$HOST" -p "$port" -U "$IPMI_USER" -P "$IPMI_PASS" \
			"$@" power status 2>/dev/null | grep -q '^Chassis Power is'; then
			return 0
		fi
		sleep 0.25
	done
	return 1
}
