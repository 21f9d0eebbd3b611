#!/usr/bin/env bash
# track_bench.sh - the tracking listener's benchmark, against nginx in the same run, and the
# journey engine's events per second.
#
# What it measures:
#   nginx        nginx (Debian's nginx-light), one worker, access log off, serving a static
#                43-byte GIF: the ceiling for "a small HTTP server on this machine".
#   dripd /o/    the real daemon's open pixel with one valid token: verify the HMAC, answer,
#                queue the hit; every open is recorded by the group commit (at most 100 ms
#                later). After the run the script checks that the database holds one open
#                event per answered request.
#   dripd /c/    a click: the same plus a primary-key read of the stored link before the 302.
#   wrk -t1 -cC -dD --latency with a browser User-Agent, R runs each, median reported;
#   ratios are dripd / nginx (rate) and dripd / nginx (p99 latency, lower is better).
#   Peak RSS is VmHWM of dripd and of the nginx worker at the end.
#   journey      tests/bench/journey_bench.c: L leads created and enrolled, then E events
#                (opens, clicks, replies) through journey_on_event, 100 per transaction.
# Target (issue): dripd /o/ >= 0.5 x nginx's rate.
#
# Run (Debian 12; needs wrk, nginx-light, curl; builds into build/; ~1-2 minutes):
#   bash tests/bench/track_bench.sh [--conns C] [--duration D] [--runs R] [--leads L]
#        [--events E] [--keep]
# Not part of CI: run on demand; it prints a table and leaves nothing running.
set -euo pipefail

conns=50
duration=5
runs=3
leads=100000
events=200000
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--conns) conns=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--leads) leads=$2; shift 2 ;;
	--events) events=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "track_bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${DRIPD_BENCH_BUILD:-$root/build}
for tool in wrk nginx curl cc pkg-config sqlite3; do
	command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
		{ echo "track_bench: $tool is missing (.ci/install-deps installs it)" >&2; exit 1; }
done
"$root/.ci/build" "$build" >/dev/null

work=$(mktemp -d /tmp/track-bench.XXXXXX)
chmod 755 "$work" # nginx workers run as www-data
dripd_pid="" nginx_pid=""
cleanup() {
	[ -n "$dripd_pid" ] && kill "$dripd_pid" 2>/dev/null && wait "$dripd_pid" 2>/dev/null
	[ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null
	if [ "$keep" = 1 ]; then echo "track_bench: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ua="Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"

# ---- dripd with one lead whose message has a pixel and a tracked link
mkdir -p "$work/content/sequences" "$work/content/templates"
cat >"$work/content/journey.json" <<'EOF'
{ "stages": ["awareness", "customer"],
  "sender": { "company": "Bench", "postal_address": "1 Quay, Bristol" },
  "scores": { "open": 1, "click": 3 },
  "rules": [ { "on": "event", "kind": "purchase", "action": "customer" } ] }
EOF
cat >"$work/content/sequences/a.json" <<'EOF'
{ "stage": "awareness", "mode": "nurture", "pixel": true,
  "steps": [ { "id": "one", "delay": "0d", "template": "one.md" },
             { "id": "two", "delay": "30d", "template": "one.md" } ] }
EOF
printf -- '---\nsubject: Hello\n---\nRead [the guide](https://example.com/guide "guide").\n' \
	>"$work/content/templates/one.md"
dport=$(free_port)
cat >"$work/dripd.json" <<EOF
{ "state_dir": "state", "content_dir": "content", "control_socket": "control.sock",
  "delivery": { "url": "maildir:Maildir", "from": "Bench <bench@example.com>" },
  "tracking": { "listen": "127.0.0.1:$dport", "base_url": "http://127.0.0.1:$dport" },
  "test_clock": true, "log_level": "warning" }
EOF
(cd "$work" && exec "$build/dripd" -c dripd.json 2>"$work/dripd.log") &
dripd_pid=$!
ctl() { "$build/dripctl" -s "$work/control.sock" "$@"; }
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && break; sleep 0.1; done
ctl lead add bench@example.org >/dev/null
for _ in $(seq 100); do [ -n "$(ls "$work/Maildir/new" 2>/dev/null)" ] && break; sleep 0.1; done
ctl clock advance 1h >/dev/null
msg=$(cat "$work"/Maildir/new/*)
open_url=$(grep -o "http://127.0.0.1:$dport/o/[A-Za-z0-9_-]*" <<<"$msg" | head -1)
click_url=$(grep -o "http://127.0.0.1:$dport/c/[A-Za-z0-9_-]*" <<<"$msg" | head -1)
[ -n "$open_url" ] && [ -n "$click_url" ] || { echo "track_bench: no tracking URLs" >&2; exit 1; }

# ---- nginx, one worker, the same GIF
nport=$(free_port)
mkdir -p "$work/nginx/www" "$work/nginx/tmp"
printf 'GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;' \
	>"$work/nginx/www/pixel.gif"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp; proxy_temp_path $work/nginx/tmp;
  fastcgi_temp_path $work/nginx/tmp; uwsgi_temp_path $work/nginx/tmp; scgi_temp_path $work/nginx/tmp;
  server {
    listen 127.0.0.1:$nport;
    location = /pixel.gif { root $work/nginx/www; default_type image/gif;
      add_header Cache-Control "no-store, no-cache, must-revalidate, max-age=0"; }
  }
}
EOF
/usr/sbin/nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
nginx_pid=$!
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$nport/pixel.gif" && break; sleep 0.1; done

# wrk_run URL -> "RATE P99_MS REQUESTS"
wrk_run() {
	local out rate p99 reqs
	out=$(wrk -t1 -c"$conns" -d"${duration}s" --latency -H "User-Agent: $ua" "$1")
	rate=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	echo "$rate $p99 $reqs"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A rate p99
total_opens=0
for target in nginx open click; do
	case $target in
	nginx) url="http://127.0.0.1:$nport/pixel.gif" ;;
	open) url=$open_url ;;
	click) url=$click_url ;;
	esac
	rates="" p99s=""
	for _ in $(seq "$runs"); do
		read -r r p n < <(wrk_run "$url")
		rates+="$r"$'\n' p99s+="$p"$'\n'
		[ "$target" = open ] && total_opens=$((total_opens + n))
	done
	rate[$target]=$(printf '%s' "$rates" | median)
	p99[$target]=$(printf '%s' "$p99s" | median)
done
sleep 0.5 # past the group commit
recorded=$(sqlite3 "$work/state/dripd.db" "SELECT count(*) FROM events WHERE kind = 'open'")
dripd_rss=$(awk '/VmHWM/ {print $2}' "/proc/$dripd_pid/status")
nginx_worker=$(pgrep -P "$nginx_pid" | head -1)
nginx_rss=$(awk '/VmHWM/ {print $2}' "/proc/$nginx_worker/status")

echo
echo "tracking: wrk -t1 -c$conns -d${duration}s, median of $runs runs, $(nproc) cores, $(date -u +%F)"
printf '%-28s %12s %10s %16s %14s\n' "" "requests/s" "p99 ms" "rate vs nginx" "p99 vs nginx"
for target in nginx open click; do
	label=$target
	[ "$target" = open ] && label="dripd /o/ (open pixel)"
	[ "$target" = click ] && label="dripd /c/ (click, 302)"
	[ "$target" = nginx ] && label="nginx static GIF, 1 worker"
	printf '%-28s %12.0f %10.2f %16s %14s\n' "$label" "${rate[$target]}" "${p99[$target]}" \
		"$(awk -v a="${rate[$target]}" -v b="${rate[nginx]}" 'BEGIN {printf "%.2f", a/b}')" \
		"$(awk -v a="${p99[$target]}" -v b="${p99[nginx]}" 'BEGIN {printf "%.2f", a/b}')"
done
echo "opens answered $total_opens, recorded in the database $recorded"
echo "peak RSS: dripd $((dripd_rss / 1024)) MiB ($dripd_rss kB), nginx worker $((nginx_rss / 1024)) MiB ($nginx_rss kB)"
[ "$recorded" -ge "$total_opens" ] || echo "track_bench: WARNING: fewer opens recorded than answered"

kill "$dripd_pid"; wait "$dripd_pid" 2>/dev/null || true; dripd_pid=""
kill "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true; nginx_pid=""

# ---- the journey engine
echo
cc -O2 -I"$root/include" -o "$work/journey_bench" "$root/tests/bench/journey_bench.c" \
	"$build/libdripcore.a" $(pkg-config --libs libuv libcurl sqlite3 libcjson libcmark libcrypto) \
	-lhttp_parser -lpthread
"$work/journey_bench" "$root/content" "$work/journey.db" "$leads" "$events" 100
