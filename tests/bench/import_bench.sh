#!/usr/bin/env bash
# import_bench.sh - dripd's import and idle benchmark (issue 7's Benchmark section).
#
# Part 1, import: generates N leads as CSV (email, first_name, last_name, company, tz, tags,
# one attribute column) and imports them with `dripctl lead import` into a running dripd.
# Reports the import's wall time and rows/s, dripd's peak RSS (VmHWM from /proc), and the
# latency of `dripctl status` (a whole dripctl run: connect, ask, print) sampled every
# 50 ms throughout the import: max and p99, both the daemon's answer on the socket and a
# whole dripctl run.
# Part 2, at N leads: D touches are made due (with dripd stopped, straight in SQLite; a
# bench-only shortcut) and dripd is started with Postfix's smtp-sink as its relay. Reports
# the scheduler's claims (dripd's own debug log line "sched: claimed K touch(es) in X ms":
# the claim query, pending -> queued, in its transaction) as max and median, the time to
# send all D, dripd's CPU use over 10 s once nothing is due (utime + stime from /proc, as a
# share of one core; nothing else talks to dripd then), and `dripctl status` latency at N
# leads over the 5 s after.
# Targets (issue 7): import < 30 s for 1,000,000, peak RSS < 128 MiB, status < 100 ms
# throughout; claim fast; CPU ~0 when idle.
#
# Run (on a Debian 12 machine with Postfix's binaries, as smtp_bench.sh; builds dripd into
# build-bench/; ~2-4 minutes for 1,000,000):
#   bash tests/bench/import_bench.sh [--leads N] [--due D] [--keep]
#     --leads N   leads in the CSV (default 1000000)
#     --due D     touches made due for part 2 (default 10000; 0 skips part 2)
#     --keep      keep the work folder
#   DRIPD_BENCH_BUILD=DIR uses another build folder. DRIPD_BENCH_PERF=1 records
#   `perf record -g` of dripd during the import into the work folder (use with --keep;
#   DRIPD_BENCH_PERF=dwarf for DWARF call graphs, which see through the libraries).
# Not part of CI; leaves nothing running.
set -euo pipefail

leads=1000000
due=10000
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--leads) leads=$2; shift 2 ;;
	--due) due=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "import_bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
[[ $leads =~ ^[1-9][0-9]*$ ]] || { echo "import_bench: --leads $leads is not a positive number" >&2; exit 2; }
[[ $due =~ ^[0-9]+$ ]] || { echo "import_bench: --due $due is not a number" >&2; exit 2; }
[ "$due" -le "$leads" ] || { echo "import_bench: --due $due is more than --leads $leads" >&2; exit 2; }

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${DRIPD_BENCH_BUILD:-$root/build-bench}
work=$(mktemp -d /tmp/dripd-ibench.XXXXXX)
chmod 755 "$work" # smtp-sink drops to nobody
sink_pid='' dripd_pid='' perf_pid='' sampler_pid=''

stop_pid() { # PID [SIGNAL]: signal (TERM), wait up to 30 s, then SIGKILL
	local pid=$1 sig=${2:-TERM}
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -"$sig" "$pid" 2>/dev/null || true
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	stop_pid "$sampler_pid"
	stop_pid "$perf_pid" INT
	stop_pid "$dripd_pid"
	stop_pid "$sink_pid"
	if [ "$keep" = 1 ]; then
		echo "import_bench: work folder kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s import_bench: %s\n' "$(date +%T)" "$*" >&2; }
now_s() { date +%s.%N; }

say "building dripd into $build"
"$root/.ci/build" "$build"
dripd=$build/dripd
dripctl=$build/dripctl

# --- content and config ----------------------------------------------------------------
# One nurture sequence whose first step is a week away: an import schedules a touch per
# lead (pending) and nothing is sent during part 1.
mkdir -p "$work/content/sequences" "$work/content/templates" "$work/run"
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
  "description": "The import benchmark: a welcome mail a week after the import.",
  "steps": [ { "id": "welcome", "delay": "7d", "template": "welcome.md" } ]
}
EOF
cp "$root/content/templates/awareness/welcome.md" "$work/content/templates/welcome.md"
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
tport=$(free_port) # tracking: not the default 8025, which another dripd may hold
write_config() { # LOG_LEVEL
	cat >"$work/run/dripd.json" <<EOF
{
  "state_dir": "state",
  "content_dir": "$work/content",
  "control_socket": "control.sock",
  "log_level": "$1",
  "delivery": { "url": "smtp://127.0.0.1:$port", "from": "Ana Ruiz <ana@example.com>",
                "max_connections": 8 },
  "tracking": { "listen": "127.0.0.1:$tport", "base_url": "https://t.example.com" }
}
EOF
}
sock=$work/run/control.sock
start_dripd() {
	(cd "$work/run" && exec "$dripd" -c "$work/run/dripd.json") >>"$work/run/dripd.log" 2>&1 &
	dripd_pid=$!
	for _ in $(seq 600); do
		"$dripctl" -s "$sock" status >/dev/null 2>&1 && return 0
		kill -0 "$dripd_pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "import_bench: dripd did not start:" >&2
	cat "$work/run/dripd.log" >&2
	exit 1
}
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$dripd_pid/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$dripd_pid/stat"; }

# The status sampler, every 50 ms until stopped: the status request's round trip on the
# control socket (connect, ask, whole answer read: the daemon's latency) and a whole
# `dripctl status` run (process start included, which alone takes tens of ms on a loaded
# machine); one line each, "socket MS RC" and "dripctl MS RC".
cat >"$work/sampler.py" <<'EOF'
#!/usr/bin/python3
import socket, subprocess, sys, time
dripctl, sock, out = sys.argv[1:4]
with open(out, "w") as f:
    while True:
        t = time.monotonic()
        rc = 1
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(sock)
                s.sendall(b'{"v":1,"id":1,"cmd":"status","args":{}}\n')
                buf = b""
                while not buf.endswith(b"\n"):
                    part = s.recv(65536)
                    if not part:
                        break
                    buf += part
                rc = 0 if b'"ok":true' in buf else 1
        except OSError:
            pass
        f.write("socket %.1f %d\n" % ((time.monotonic() - t) * 1000, rc))
        t = time.monotonic()
        r = subprocess.run([dripctl, "-s", sock, "status"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        f.write("dripctl %.1f %d\n" % ((time.monotonic() - t) * 1000, r.returncode))
        f.flush()
        time.sleep(0.05)
EOF
# latency_summary FILE KIND: "n=… max=… ms p99=… ms median=… ms failed=…"
latency_summary() {
	awk -v k="$2" '$1 == k { print $2, $3 }' "$1" | sort -g -k1,1 |
		awk '{ a[NR] = $1; if ($2 != 0) bad++ }
		END { if (!NR) { print "n=0"; exit }
		      i = int(NR * 0.99); if (i < 1) i = 1
		      printf "n=%d max=%.1f ms p99=%.1f ms median=%.1f ms failed=%d\n",
		             NR, a[NR], a[i], a[int((NR + 1) / 2)], bad + 0 }'
}

# --- part 1: import ----------------------------------------------------------------------
say "generating $leads leads"
awk -v n="$leads" 'BEGIN {
	split("Europe/Berlin America/New_York Asia/Tokyo Europe/London", tz, " ")
	print "email,first_name,last_name,company,tz,tags,Lead Source"
	for (i = 1; i <= n; i++)
		printf "lead%d@example%d.com,First%d,\"Last, %d\",Company %d,%s,bench;import,web\n",
		       i, i % 1000, i, i, i % 5000, tz[i % 4 + 1]
}' >"$work/leads.csv"
say "CSV: $(du -m "$work/leads.csv" | cut -f1) MiB"

write_config warning
start_dripd
if [ -n "${DRIPD_BENCH_PERF:-}" ]; then
	callgraph=-g
	[ "$DRIPD_BENCH_PERF" = dwarf ] && callgraph="--call-graph dwarf,16384"
	# shellcheck disable=SC2086 # two words when dwarf
	perf record $callgraph -o "$work/perf.data" -p "$dripd_pid" >"$work/perf.log" 2>&1 &
	perf_pid=$!
fi
/usr/bin/python3 "$work/sampler.py" "$dripctl" "$sock" "$work/status-import.txt" &
sampler_pid=$!
load=$(cut -d' ' -f1-3 /proc/loadavg)
say "importing (load average $load)"
c0=$(cpu_ticks)
t0=$(now_s)
"$dripctl" -s "$sock" --json lead import "$work/leads.csv" >"$work/import.json"
t1=$(now_s)
c1=$(cpu_ticks)
stop_pid "$sampler_pid"
sampler_pid=''
stop_pid "$perf_pid" INT
perf_pid=''
import_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
rate=$(awk -v n="$leads" -v s="$import_s" 'BEGIN { printf "%.0f", n / s }')
hwm=$(hwm_kib)
cat "$work/import.json" >&2
echo
echo "import of $leads leads (load average at start $load):"
echo "  wall time        $import_s s   ($rate rows/s)   target < 30 s for 1,000,000"
echo "  dripd CPU        $(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" -v n="$leads" \
	'BEGIN { printf "%.1f s, %.0f us/row (robust to the load)", (b - a) / hz, (b - a) / hz * 1e6 / n }')"
echo "  dripd peak RSS   $(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }') MiB   target < 128 MiB"
echo "  status answer    $(latency_summary "$work/status-import.txt" socket)   target < 100 ms"
echo "  dripctl status   $(latency_summary "$work/status-import.txt" dripctl)   (whole process)"

# --- part 2: claims and idle at N leads ---------------------------------------------------
"$dripctl" -s "$sock" status >/dev/null
stop_pid "$dripd_pid"
dripd_pid=''
[ "$due" -gt 0 ] || exit 0
/usr/sbin/smtp-sink -u nobody 127.0.0.1:"$port" 256 >"$work/sink.log" 2>&1 &
sink_pid=$!
# Due a minute ago, and without a time zone (so no lead's send window holds it back).
sqlite3 "$work/run/state/dripd.db" >/dev/null <<EOF
PRAGMA foreign_keys = ON;
BEGIN;
CREATE TEMP TABLE due AS SELECT id, lead_id FROM touches WHERE state = 'pending'
  ORDER BY id LIMIT $due;
UPDATE touches SET due_at = $(($(date +%s) - 60)) WHERE id IN (SELECT id FROM due);
UPDATE leads SET tz = '' WHERE id IN (SELECT lead_id FROM due);
COMMIT;
EOF
write_config debug
: >"$work/run/dripd.log"
t0=$(now_s)
start_dripd
for _ in $(seq 6000); do
	sent=$("$dripctl" -s "$sock" --json status | /usr/bin/python3 -c \
		'import json, sys; print(json.load(sys.stdin)["touches"]["sent"])' 2>/dev/null || echo 0)
	[ "$sent" -ge "$due" ] && break
	sleep 0.1
done
t1=$(now_s)
send_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
sleep 1
c0=$(cpu_ticks)
sleep 10
c1=$(cpu_ticks)
/usr/bin/python3 "$work/sampler.py" "$dripctl" "$sock" "$work/status-idle.txt" &
sampler_pid=$!
sleep 5
stop_pid "$sampler_pid"
sampler_pid=''
hz=$(getconf CLK_TCK)
claims=$(sed -n 's/.*sched: claimed \([0-9]*\) touch(es) in \([0-9.]*\) ms.*/\2 \1/p' \
	"$work/run/dripd.log" | sort -g | awk '{ a[NR] = $1; k += $2 }
	END { if (!NR) { print "none logged"; exit }
	      printf "%d claims of %d touches: median %.2f ms, max %.2f ms\n", NR, k,
	             a[int((NR + 1) / 2)], a[NR] }')
echo
echo "at $leads leads with $due due (load average $(cut -d' ' -f1-3 /proc/loadavg)):"
echo "  scheduler claims  $claims"
echo "  all $due sent in $send_s s (from dripd's start; sent = $sent)"
echo "  status answer     $(latency_summary "$work/status-idle.txt" socket) (5 s after the CPU sample)"
echo "  dripctl status    $(latency_summary "$work/status-idle.txt" dripctl) (whole process)"
echo "  CPU while idle    $(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.2f%% of a core over 10 s", (b - a) * 100 / hz / 10 }')"
