#!/usr/bin/env bash
# smtp_bench.sh - dripd's delivery benchmark: how fast dripd sends mail end to end over
# SMTP, against two ceilings measured in the same run on the same machine, and a reference
# sender for another design of dripd's mailer (loop_ref).
#
# What it measures, all against Postfix's smtp-sink on loopback (it accepts and discards):
#   smtp-source  Postfix's own load generator: N messages of SIZE bytes over C reused
#                connections (-d). The ceiling for "an SMTP client" here. Median of R runs.
#   curl_ref     tests/bench/curl_ref.c: C threads, each one reused libcurl easy handle,
#                the same N messages of SIZE bytes. The ceiling for "libcurl in threads",
#                which is what dripd's mailer is. Median of R runs.
#   loop_ref     tests/bench/loop_ref.c: one thread, C connections libcurl opens
#                (CURLOPT_CONNECT_ONLY), the SMTP dialogue with curl_easy_send/recv from
#                one poll(), pipelined: what the loop could do instead of sender threads.
#                Not a target; the ceiling of that other design. Median of R runs.
#   dripd        the real daemon with max_connections C and N leads whose one touch is due
#                now: claim, render, build, commit as sending, send, record sent, schedule
#                the next step, for every lead. Wall time from starting dripd until
#                `dripctl status` says sent == N (seen within 0.2 s), each run from a copy
#                of the same database; peak RSS is VmHWM from /proc just before dripd is
#                stopped. A run that leaves a touch unsent or logs a warning fails the bench.
# Each run measures the three back to back, so a VM whose speed drifts over minutes moves
# them alike; the ratios are taken within each run and their medians reported.
# SIZE is the size of one dripd message of the bench content (measured with
# `dripctl preview`), so all three send messages of about the same size (smtp-source adds
# its own few header lines to SIZE bytes of body; curl_ref sends exactly SIZE bytes).
# Where the CPU goes, last run: smtp-source's and curl_ref's own CPU a message, the sink's
# CPU a message behind each of the three senders (it shares the two cores), and context
# switches a message for dripd (loop thread, all threads) and curl_ref; and the whole
# machine's busy CPU a message during each sender's run (/proc/stat: every process and
# kernel thread, the WAL's writeback included), which says whether the two cores were full.
# Targets (issue): dripd >= 0.5 x smtp-source, stretch >= 0.9 x curl_ref, peak RSS < 64 MiB.
#
# Run (as root, on a Debian 12 machine; installs Postfix's binaries if missing, never
# starts a Postfix service; builds dripd into build-bench/; takes ~2-4 minutes):
#   bash tests/bench/smtp_bench.sh [--leads N] [--conns C] [--runs R] [--caps] [--keep]
#     --leads N   messages per measurement and leads for dripd (default 100000)
#     --conns C   SMTP connections: smtp-source sessions, curl_ref threads, dripd's
#                 delivery.max_connections (default 8)
#     --runs R    runs of all three; medians are reported (default 3)
#     --caps      give dripd caps that never bind (per_hour and per_day of 10 x N, and
#                 example.org limited to 10 x N an hour): what counting sends for the
#                 caps costs (before the governor kept running counts, ~6x slower)
#     --keep      keep the work folder (database, logs) instead of removing it
#   DRIPD_BENCH_BUILD=DIR uses another build folder (default build-bench/ at the top).
#   DRIPD_BENCH_PERF=callgrind runs dripd's first run under callgrind and prints the
#   instructions a message of its loop thread and of all its threads: deterministic where
#   this VM's timings drift by a third (use ~2,000 leads; valgrind is ~50 times slower, so
#   that run's rates and CPU mean nothing). Kernel time is not counted.
#   DRIPD_BENCH_PERF=1 records `perf record -g` of dripd during its run into the work
#   folder (DRIPD_BENCH_PERF=dwarf: DWARF call graphs, which see through the system
#   libraries' missing frame pointers); add --keep and look with
#   `perf report -i WORK/perf.data`. DRIPD_BENCH_PERF=strace counts dripd's system calls
#   into WORK/strace.txt (`strace -c -f`; DRIPD_BENCH_STRACE_ARGS replaces -c, e.g.
#   "-T -e trace=fdatasync" for each fsync's duration and thread). Profiling slows dripd down: its figures are then not
#   the benchmark's.
#
# Not part of CI: run on demand; it prints a table and leaves nothing running.
# Leads are inserted straight into the database with sqlite3 because bulk lead import
# (`dripctl import`) is not built yet: a bench-only shortcut, after dripd has created the
# database with its own schema.
set -euo pipefail

leads=100000
conns=8
runs=3
keep=0
caps=""
while [ $# -gt 0 ]; do
	case $1 in
	--leads) leads=$2; shift 2 ;;
	--conns) conns=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	--caps) caps=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "smtp_bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
for v in "$leads" "$conns" "$runs"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "smtp_bench: $v is not a positive number" >&2; exit 2; }
done

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${DRIPD_BENCH_BUILD:-$root/build-bench}
work=$(mktemp -d /tmp/dripd-bench.XXXXXX)
chmod 755 "$work" # smtp-sink drops to nobody
sink_pid='' dripd_pid='' perf_pid=''
dripd_prefix=() # a command dripd runs under (valgrind for DRIPD_BENCH_PERF=callgrind)
instructions='' # callgrind's figures, when asked for

stop_pid() { # PID: SIGTERM, wait up to 30 s, then SIGKILL
	local pid=$1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	stop_pid "$perf_pid"
	stop_pid "$dripd_pid"
	stop_pid "$sink_pid"
	if [ "$keep" = 1 ]; then
		echo "smtp_bench: work folder kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s smtp_bench: %s\n' "$(date +%T)" "$*" >&2; }
now_s() { date +%s.%N; }
# median of the numbers on stdin
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2];
	else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", a / b }'; }

# --- tools -------------------------------------------------------------------------------
if [ ! -x /usr/sbin/smtp-sink ] || [ ! -x /usr/sbin/smtp-source ]; then
	say "installing postfix (for smtp-sink and smtp-source; no service is started)"
	# "No configuration" writes no main.cf, and a policy-rc.d that says no keeps the
	# package scripts from starting a system Postfix.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	policy_made=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy_made=1
	fi
	apt_rc=0
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
		--no-install-recommends postfix >"$work/apt.log" 2>&1 || apt_rc=$?
	[ "$policy_made" = 0 ] || rm -f /usr/sbin/policy-rc.d
	if [ "$apt_rc" != 0 ]; then
		tail -20 "$work/apt.log" >&2
		exit 1
	fi
fi
for tool in cc pkg-config sqlite3 cmake; do
	command -v "$tool" >/dev/null || {
		echo "smtp_bench: $tool is missing (bash .ci/install-deps installs it)" >&2
		exit 1
	}
done

say "building dripd into $build"
"$root/.ci/build" "$build"
dripd=$build/dripd
dripctl=$build/dripctl
say "building curl_ref"
# shellcheck disable=SC2046 # pkg-config's words are meant to split
cc -O2 -Wall -Wextra -o "$work/curl_ref" "$root/tests/bench/curl_ref.c" \
	$(pkg-config --cflags --libs libcurl) -lpthread
say "building loop_ref"
# shellcheck disable=SC2046 # pkg-config's words are meant to split
cc -O2 -Wall -Wextra -o "$work/loop_ref" "$root/tests/bench/loop_ref.c" \
	$(pkg-config --cflags --libs libcurl)

# --- smtp-sink -------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
tport=$(free_port) # dripd's tracking listener (/metrics), not the default 8025
url=smtp://127.0.0.1:$port
# -u: it refuses to run as root otherwise; 256: the listen backlog.
/usr/sbin/smtp-sink -u nobody 127.0.0.1:"$port" 256 >"$work/sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	kill -0 "$sink_pid" 2>/dev/null || { cat "$work/sink.log" >&2; exit 1; }
	sleep 0.1
done
say "smtp-sink listening on 127.0.0.1:$port"

# --- dripd's content and config ----------------------------------------------------------
# One nurture sequence of one step, the sample journey's welcome mail (Markdown with a
# tracked link, HTML + text, unsubscribe footer; no open pixel, which is opt-in): a realistic message.
mkdir -p "$work/content/sequences" "$work/content/templates"
cat >"$work/content/journey.json" <<'EOF'
{
  "stages": ["awareness", "customer"],
  "sender": {
    "company": "Northwind Pipeline Coaching",
    "postal_address": "Northwind Pipeline Coaching, 12 Harbour Street, Bristol BS1 4QA, United Kingdom"
  }
}
EOF
cat >"$work/content/sequences/bench.json" <<'EOF'
{
  "stage": "awareness",
  "mode": "nurture",
  "description": "The delivery benchmark: one welcome mail.",
  "steps": [ { "id": "welcome", "delay": "0d", "template": "welcome.md" } ]
}
EOF
cp "$root/content/templates/awareness/welcome.md" "$work/content/templates/welcome.md"

caps_json=""
if [ -n "$caps" ]; then
	caps_json=", \"per_hour\": $((leads * 10)), \"per_day\": $((leads * 10)),
                \"domains\": { \"example.org\": { \"per_hour\": $((leads * 10)) } }"
fi
write_config() { # FOLDER
	cat >"$1/dripd.json" <<EOF
{
  "state_dir": "state",
  "content_dir": "$work/content",
  "control_socket": "control.sock",
  "log_level": "warning",
  "delivery": { "url": "$url", "from": "Ana Ruiz <ana@example.com>",
                "max_connections": $conns$caps_json },
  "tracking": { "base_url": "https://t.example.com", "listen": "127.0.0.1:$tport" }
}
EOF
}
start_dripd() { # FOLDER: starts dripd there, waits until it answers
	local dir=$1
	(cd "$dir" && exec "${dripd_prefix[@]}" "$dripd" -c "$dir/dripd.json") >>"$dir/dripd.log" 2>&1 &
	dripd_pid=$!
	for _ in $(seq 200); do
		"$dripctl" -s "$dir/control.sock" status >/dev/null 2>&1 && return 0
		kill -0 "$dripd_pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "smtp_bench: dripd did not start:" >&2
	cat "$dir/dripd.log" >&2
	exit 1
}
stop_dripd() {
	stop_pid "$dripd_pid"
	dripd_pid=''
}

# The size of one message: a throwaway daemon, paused so nothing goes out, previews it.
mkdir -p "$work/probe" "$work/run"
write_config "$work/probe"
write_config "$work/run"
"$dripd" check -c "$work/run/dripd.json" >/dev/null
start_dripd "$work/probe"
ctl_probe=("$dripctl" -s "$work/probe/control.sock")
"${ctl_probe[@]}" pause >/dev/null
"${ctl_probe[@]}" lead add lead1@example.org --first-name Lead --last-name Number1 \
	--company "Company 1" --title Owner >/dev/null
size=$("${ctl_probe[@]}" --json preview lead1@example.org |
	python3 -c 'import json, sys; print(len(json.load(sys.stdin)["message"].encode()))')
stop_dripd
say "one dripd message is $size bytes"

# The bench database: dripd creates it (its own schema and migrations), then N leads, each
# enrolled in the bench sequence with its one touch pending and due now.
start_dripd "$work/run"
stop_dripd
db=$work/run/state/dripd.db
t_now=$(date +%s)
say "inserting $leads leads with a due touch each into $db"
sqlite3 "$db" >/dev/null <<EOF
PRAGMA foreign_keys = ON;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $leads)
INSERT INTO leads (id, email, first_name, last_name, company, title, stage, created_at,
                   updated_at)
SELECT i, 'lead' || i || '@example.org', 'Lead', 'Number' || i, 'Company ' || i, 'Owner',
       'awareness', $t_now, $t_now FROM n;
INSERT INTO enrolments (id, lead_id, sequence, stage, started_at)
SELECT id, id, 'bench', 'awareness', $t_now FROM leads;
INSERT INTO touches (lead_id, enrolment_id, sequence, step, step_index, due_at, created_at,
                     updated_at)
SELECT id, id, 'bench', 'welcome', 0, $t_now, $t_now, $t_now FROM leads;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
EOF

# A copy of the prepared database, so that each dripd run starts from the same N due leads.
cp "$db" "$work/bench.db"

# --- the runs ----------------------------------------------------------------------------
# Each run measures smtp-source, curl_ref and dripd back to back, so a machine whose speed
# drifts over minutes (a VM's neighbours) moves all three alike; each ratio is taken within
# its run, and the table reports medians.
: >"$work/source.rates"
: >"$work/curl.rates"
: >"$work/loop.rates"
# Set by ref_run through their names.
cost_sink_curl='' machine_curl='' cost_sink_loop='' machine_loop=''
: >"$work/dripd.runs"
# CPU seconds a process (or one thread) used, from utime + stime in its stat file.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "$1"; }
# Busy CPU seconds of the whole machine so far (all but idle and iowait), from /proc/stat.
machine_cpu() { awk -v hz="$(getconf CLK_TCK)" \
	'/^cpu / { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat; }
# Microseconds a message between CPU seconds BEFORE and AFTER.
per_message() { awk -v a="$1" -v b="$2" -v n="$leads" 'BEGIN { printf "%.0f", (b - a) * 1e6 / n }'; }
# The sink's CPU a message since it had used SINK0 seconds: the other side's cost, which
# shares the two cores with the sender measured.
sink_cost() { per_message "$1" "$(cpu_of "/proc/$sink_pid/stat")"; }
# The machine's busy CPU a message since it had used M0 seconds.
machine_cost() { per_message "$1" "$(machine_cpu)"; }
source_run() { # RUN
	say "smtp-source run $1/$runs: $leads messages, $conns connections"
	local t0 t1 sink0 m0 TIMEFORMAT='%U %S' # `time` prints user and system seconds
	sink0=$(cpu_of "/proc/$sink_pid/stat")
	m0=$(machine_cpu)
	t0=$(now_s)
	{ time /usr/sbin/smtp-source -d -s "$conns" -m "$leads" -l "$size" -f bench@example.com \
		-t sink@example.org 127.0.0.1:"$port" >"$work/source.log" 2>&1; } \
		2>"$work/source.time" || {
		cat "$work/source.log" >&2
		exit 1
	}
	t1=$(now_s)
	cost_source=$(awk -v n="$leads" '{ printf "%.0f", ($1 + $2) * 1e6 / n }' "$work/source.time")
	cost_sink_source=$(sink_cost "$sink0")
	machine_source=$(machine_cost "$m0")
	awk -v n="$leads" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", n / (b - a) }' \
		>>"$work/source.rates"
	say "  $(tail -1 "$work/source.rates") msg/s"
}
ref_run() { # NAME RUN: a reference sender, curl or loop (curl_ref, loop_ref); its rate goes
	# to NAME.rates, its own CPU line to NAME.cost, the sink's and the machine's CPU a
	# message to cost_sink_NAME and machine_NAME (of the last run)
	say "$1_ref run $2/$runs"
	local out sink0 m0
	sink0=$(cpu_of "/proc/$sink_pid/stat")
	m0=$(machine_cpu)
	out=$("$work/$1_ref" "$url" "$leads" "$size" "$conns")
	printf -v "cost_sink_$1" '%s' "$(sink_cost "$sink0")"
	printf -v "machine_$1" '%s' "$(machine_cost "$m0")"
	say "  $(head -1 <<<"$out")"
	sed -n '1s/.*: \([0-9.]*\) msg\/s$/\1/p' <<<"$out" >>"$work/$1.rates"
	sed -n "2s/^$1_ref: //p" <<<"$out" >"$work/$1.cost"
}
dripd_run() { # RUN: appends "rate secs cpu loop_cpu rss_kib" to dripd.runs
	say "dripd run $1/$runs: $leads due leads, $conns connections"
	rm -f "$db" "$db-wal" "$db-shm"
	cp "$work/bench.db" "$db"
	: >"$work/run/dripd.log"
	local t0 t1 sent status last_report deadline sink0 m0
	sink0=$(cpu_of "/proc/$sink_pid/stat")
	m0=$(machine_cpu)
	t0=$(now_s)
	# Profiles the first run only.
	if [ "$1" = 1 ] && [ "${DRIPD_BENCH_PERF:-0}" = callgrind ]; then
		dripd_prefix=(valgrind --tool=callgrind --separate-threads=yes
			--callgrind-out-file="$work/callgrind.%p")
	fi
	start_dripd "$work/run"
	dripd_prefix=()
	if [ "$1" = 1 ] && [ "${DRIPD_BENCH_PERF:-0}" = strace ]; then
		strace ${DRIPD_BENCH_STRACE_ARGS:--c} -f -o "$work/strace.txt" -p "$dripd_pid" \
			2>"$work/perf.log" &
		perf_pid=$!
	elif [ "$1" = 1 ] && [ "${DRIPD_BENCH_PERF:-0}" != 0 ] &&
		[ "$DRIPD_BENCH_PERF" != callgrind ]; then
		case $DRIPD_BENCH_PERF in
		dwarf) perf_args=(--call-graph "dwarf,16384" -F 499) ;;
		*) perf_args=(-g) ;;
		esac
		perf record "${perf_args[@]}" -o "$work/perf.data" -p "$dripd_pid" \
			>"$work/perf.log" 2>&1 &
		perf_pid=$!
	fi
	# Each `dripctl status` costs the loop a turn: the poll sleeps half the remaining time
	# estimated from the rate so far (at most 5 s), and 0.2 s once the end is near, so the
	# end is still seen within 0.2 s.
	sent=0
	last_report=$(date +%s)
	deadline=$(($(date +%s) + 1800))
	while :; do
		status=$("$dripctl" -s "$work/run/control.sock" --json status)
		# dripctl --json pretty-prints with tabs: "sent":<TAB>123
		sent=$(tr -d ' \t\n' <<<"$status" | grep -o '"sent":[0-9]*' | cut -d: -f2) || sent=0
		[ "${sent:-0}" -ge "$leads" ] && break
		kill -0 "$dripd_pid" 2>/dev/null || { echo "smtp_bench: dripd died" >&2; exit 1; }
		if [ "$(date +%s)" -gt "$deadline" ]; then
			echo "smtp_bench: dripd sent only $sent of $leads in 30 minutes" >&2
			exit 1
		fi
		if [ $(($(date +%s) - last_report)) -ge 10 ]; then
			last_report=$(date +%s)
			say "  $sent sent"
		fi
		sleep "$(awk -v s="${sent:-0}" -v n="$leads" -v a="$t0" -v b="$(now_s)" 'BEGIN {
			w = 0.2
			if (s > 0) { w = (n - s) / (s / (b - a)) / 2; if (w > 5) w = 5; if (w < 0.2) w = 0.2 }
			printf "%.2f\n", w }')"
	done
	t1=$(now_s)
	local secs rss_kib cpu_s loop_cpu_s states warnings
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }')
	rss_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$dripd_pid/status")
	cpu_s=$(cpu_of "/proc/$dripd_pid/stat")
	loop_cpu_s=$(cpu_of "/proc/$dripd_pid/task/$dripd_pid/stat")
	cost_sink_dripd=$(sink_cost "$sink0")
	machine_dripd=$(machine_cost "$m0")
	# Context switches a message (each is costly in a VM): the loop thread, then all threads.
	switches=$(awk -v n="$leads" -v loop="/proc/$dripd_pid/task/$dripd_pid/status" '
		/^(non)?voluntary_ctxt_switches:/ { all += $2; if (FILENAME == loop) l += $2 }
		END { printf "loop thread %.1f, all threads %.1f", l / n, all / n }' \
		/proc/"$dripd_pid"/task/*/status)
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" 2>/dev/null || true
		wait "$perf_pid" 2>/dev/null || true
		perf_pid=''
	fi
	local metrics
	metrics=$(curl -s "http://127.0.0.1:$tport/metrics")
	ckpts=$(awk -F'[{}" ]+' \
		'/^dripd_wal_checkpoints_total/ { printf "%s%s %s", sep, $3, $4; sep = ", " }' \
		<<<"$metrics")
	# The sender threads' time a message: delivering, and waiting for the next touch.
	senders=$(awk -F'[{}" ]+' '
		/^dripd_sender_seconds_total/ { t[$5] += $6 }
		/^dripd_sender_jobs_total/ { n += $4 }
		END { if (n) printf "%.0f us sending, %.0f us waiting for the next touch",
			t["sending"] * 1e6 / n, t["between_jobs"] * 1e6 / n }' <<<"$metrics")
	stop_dripd
	if [ "$1" = 1 ] && [ "${DRIPD_BENCH_PERF:-0}" = callgrind ]; then
		# callgrind.PID-01 is the loop thread (the main thread); the others, its threads.
		instructions=$(awk -v n="$leads" '/^summary:/ {
			all += $2; if (FILENAME ~ /-01$/) loop = $2 }
			END { printf "loop thread %.0f, all threads %.0f", loop / n, all / n }' \
			"$work"/callgrind.*)
	fi
	states=$(sqlite3 "$db" "SELECT group_concat(state || '=' || n, ' ') FROM
		(SELECT state, count(*) n FROM touches GROUP BY state)")
	warnings=$(grep -c '^<[0-4]>' "$work/run/dripd.log" || true)
	if [ "$states" != "sent=$leads" ] || [ "$warnings" != 0 ]; then
		echo "smtp_bench: dripd run $1 ended with touches $states and $warnings warning(s)" \
			"or error(s) in its log:" >&2
		grep '^<[0-4]>' "$work/run/dripd.log" | head -20 >&2
		exit 1
	fi
	echo "$(div "$leads" "$secs") $secs $cpu_s $loop_cpu_s $rss_kib" >>"$work/dripd.runs"
	say "  $(div "$leads" "$secs") msg/s"
}
for r in $(seq "$runs"); do
	source_run "$r"
	ref_run curl "$r"
	ref_run loop "$r"
	dripd_run "$r"
done
source_rate=$(median <"$work/source.rates")
curl_rate=$(median <"$work/curl.rates")
loop_rate=$(median <"$work/loop.rates")
# The median dripd run by rate (its CPU figures go with it), and the ratios within each run.
read -r dripd_rate dripd_secs cpu_s loop_cpu_s _ <<<"$(sort -g "$work/dripd.runs" |
	awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }')"
rss_kib=$(awk '$5 > m { m = $5 } END { print m }' "$work/dripd.runs")
rss_mib=$(awk -v k="$rss_kib" 'BEGIN { printf "%.1f\n", k / 1024 }')
cpu_us=$(awk -v c="$cpu_s" -v n="$leads" 'BEGIN { printf "%.0f\n", c * 1e6 / n }')
ratios() { # RATES-FILE REFERENCE-RATES-FILE: "r1 r2 …", one rate over the other, run by run
	paste -d' ' "$1" "$2" | awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $2 }'
}
cut -d' ' -f1 "$work/dripd.runs" >"$work/dripd.rates"
source_ratios=$(ratios "$work/dripd.rates" "$work/source.rates")
curl_ratios=$(ratios "$work/dripd.rates" "$work/curl.rates")
loop_ratios=$(ratios "$work/loop.rates" "$work/source.rates")

# --- the table ---------------------------------------------------------------------------
# the median of space-separated ratios, to two decimals
med() { tr ' ' '\n' | sort -g | awk '{ a[NR] = $1 } END {
	printf "%.2f\n", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
cat <<EOF

dripd delivery benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $leads messages of $size bytes, $conns connections, $runs runs
  smtp-source          $(printf '%9s' "$source_rate") msg/s   median; runs: $(paste -sd' ' "$work/source.rates")
  curl_ref             $(printf '%9s' "$curl_rate") msg/s   median; runs: $(paste -sd' ' "$work/curl.rates")
  loop_ref             $(printf '%9s' "$loop_rate") msg/s   median; runs: $(paste -sd' ' "$work/loop.rates"); $(med <<<"$loop_ratios") of smtp-source (not a target)
  dripd                $(printf '%9s' "$dripd_rate") msg/s   median; runs: $(cut -d' ' -f1 "$work/dripd.runs" | paste -sd' ')
                                 median run: $leads in $dripd_secs s; CPU ${cpu_s} s (${cpu_us} us/message), loop thread ${loop_cpu_s} s
  dripd / smtp-source  $(printf '%9s' "$(med <<<"$source_ratios")")         median of the runs' ratios ($source_ratios); target >= 0.5
  dripd / curl_ref     $(printf '%9s' "$(med <<<"$curl_ratios")")         median of the runs' ratios ($curl_ratios); stretch >= 0.9
  dripd peak RSS       $(printf '%9s' "$rss_mib") MiB     highest of the runs; target < 64
  every run sent all $leads touches, with no warning or error in dripd's log
  WAL checkpoints in the last run (thread: count): $ckpts
  a sender thread's time a message, last run: $senders
  context switches a message, last run: $switches (curl_ref: $(cat "$work/curl.cost"); loop_ref: $(cat "$work/loop.cost"))
${instructions:+  instructions a message, first run (callgrind): $instructions
}  CPU a message, last run: smtp-source ${cost_source} us (its sink ${cost_sink_source} us), curl_ref sink ${cost_sink_curl} us, loop_ref sink ${cost_sink_loop} us, dripd's sink ${cost_sink_dripd} us
  the machine's busy CPU a message, last run: smtp-source ${machine_source} us, curl_ref ${machine_curl} us, loop_ref ${machine_loop} us, dripd ${machine_dripd} us
EOF
