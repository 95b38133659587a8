#!/usr/bin/env bash
# alveole's ingress against nginx (Debian's), proxying to the same keep-alive backend, loaded by
# the same wrk, on the same cores: the proxy under test alone on CPU 0, wrk and the backend on
# CPU 1. Prints requests/s, p99 and CPU seconds per 100k requests for both, and the ratios.
# Needs: a release build of the benchmarks (cargo build --release -p alveole-bench), wrk, nginx.
# Bounded: DURATION per run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-target/release/alveole-bench}"
duration="${DURATION:-10s}"
connections="${CONNECTIONS:-32}"
host="bench.example.org"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "${work}"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }
# CPU ticks (user + system) of a process and its children.
ticks() {
    local total=0 p
    for p in "$@" $(pgrep -P "$1" || true); do
        [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "${total}"
}

backend_port="$(free_port)"; alveole_port="$(free_port)"; nginx_port="$(free_port)"
taskset -c 1 "${bin}" backend --listen "127.0.0.1:${backend_port}" >/dev/null & pids+=($!)
taskset -c 0 "${bin}" ingress-proxy --listen "127.0.0.1:${alveole_port}" \
    --upstream "127.0.0.1:${backend_port}" --host "${host}" >/dev/null & alveole=$!; pids+=($alveole)
cat > "${work}/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid ${work}/nginx.pid;
error_log ${work}/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    upstream backend { server 127.0.0.1:${backend_port}; keepalive 64; }
    server {
        listen 127.0.0.1:${nginx_port};
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }
}
CONF
taskset -c 0 nginx -c "${work}/nginx.conf" -p "${work}" & nginx=$!; pids+=($nginx)
wait_port "${backend_port}"; wait_port "${alveole_port}"; wait_port "${nginx_port}"

# name pid port → "name req/s p99 cpu_per_100k"
measure() {
    local name="$1" pid="$2" port="$3" before after out
    taskset -c 1 wrk -t1 -c"${connections}" -d2s -H "Host: ${host}" "http://127.0.0.1:${port}/" >/dev/null  # warm-up
    before="$(ticks "${pid}")"
    out="$(taskset -c 1 wrk -t1 -c"${connections}" -d"${duration}" --latency -H "Host: ${host}" "http://127.0.0.1:${port}/")"
    after="$(ticks "${pid}")"
    if echo "${out}" | grep -q "Non-2xx"; then echo "${name}: non-2xx answers" >&2; echo "${out}" >&2; exit 1; fi
    local rps p99 requests
    rps="$(echo "${out}" | awk '/Requests\/sec/ {print $2}')"
    p99="$(echo "${out}" | awk '$1 == "99%" {print $2}')"
    requests="$(echo "${out}" | awk '/requests in/ {print $1}')"
    local hz; hz="$(getconf CLK_TCK)"
    local cpu; cpu="$(python3 -c "print(f'{(${after} - ${before}) / ${hz} / ${requests} * 100000:.2f}')")"
    echo "${name} ${rps} ${p99} ${cpu}"
}

alveole_row="$(measure alveole "${alveole}" "${alveole_port}")"
nginx_row="$(measure nginx "${nginx}" "${nginx_port}")"
python3 - "${alveole_row}" "${nginx_row}" "${connections}" "${duration}" <<'PY'
import re, sys
def ms(text):
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rows = [r.split() for r in sys.argv[1:3]]
print(f"| proxy | requests/s | p99 ms | CPU s per 100k requests |")
print(f"|---|---|---|---|")
for name, rps, p99, cpu in rows:
    print(f"| {name} | {float(rps):.0f} | {ms(p99):.2f} | {cpu} |")
(a, ar, ap, ac), (n, nr, np_, nc) = rows
print(f"\nalveole / nginx: throughput {float(ar)/float(nr):.2f}x, p99 {ms(ap)/ms(np_):.2f}x, "
      f"CPU per request {float(ac)/float(nc):.2f}x ({sys.argv[3]} connections, {sys.argv[4]} per run, "
      f"proxy alone on CPU 0, wrk and backend on CPU 1)")
PY
