#!/usr/bin/env bash
# alveole's ingress against nginx (Debian's), proxying to the same keep-alive backend, loaded by
# the same clients, on the same cores: the proxy under test alone on CPU 0, the load and the
# backend on CPU 1. Three loads: plain HTTP keep-alive and HTTPS keep-alive (wrk: requests/s,
# p99, CPU seconds per 100k requests), and new TLS connections, each a full handshake
# (`alveole-bench handshakes`: handshakes/s, CPU seconds per 10k). Both proxies serve TLS 1.3
# with the same ECDSA P-256 certificate. Each load is sampled SAMPLES times per proxy (DURATION
# seconds each, after a second of warm-up), alternating which proxy goes first, and each
# proxy's median sample is kept. Prints a table per run, RUNS runs in a row.
# Needs: a release build of the benchmarks (cargo build --release -p alveole-bench), wrk,
# nginx, openssl, and unshare (the run sees its own /etc/hosts, naming the benchmark's host, so
# that wrk asks for it by SNI). Bounded: 6 × SAMPLES × (DURATION + 1) seconds per run.
set -euo pipefail
cd "$(dirname "$0")/.."
host="bench.example.org"
if [ -z "${ALVEOLE_BENCH_HOSTS:-}" ]; then
    hosts="$(mktemp)"
    { cat /etc/hosts; echo "127.0.0.1 ${host}"; } >"${hosts}"
    status=0
    ALVEOLE_BENCH_HOSTS="${hosts}" unshare -m bash -c 'mount --bind "$ALVEOLE_BENCH_HOSTS" /etc/hosts && exec bash "$0"' "$0" || status=$?
    rm -f "${hosts}"
    exit "${status}"
fi
bin="${BIN:-target/release/alveole-bench}"
duration="${DURATION:-4}"
samples="${SAMPLES:-5}"
connections="${CONNECTIONS:-32}"
runs="${RUNS:-1}"
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

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "${work}/key.pem" -out "${work}/cert.pem" -subj "/CN=${host}" \
    -addext "subjectAltName=DNS:${host}" 2>/dev/null

backend_port="$(free_port)"; alveole_port="$(free_port)"; alveole_tls="$(free_port)"
nginx_port="$(free_port)"; nginx_tls="$(free_port)"
taskset -c 1 "${bin}" backend --listen "127.0.0.1:${backend_port}" >/dev/null & pids+=($!)
taskset -c 0 "${bin}" ingress-proxy --listen "127.0.0.1:${alveole_port}" \
    --upstream "127.0.0.1:${backend_port}" --host "${host}" --tls-listen "127.0.0.1:${alveole_tls}" \
    --certificate "${work}/cert.pem" --key "${work}/key.pem" >/dev/null & alveole=$!; pids+=($alveole)
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
        listen 127.0.0.1:${nginx_tls} ssl;
        ssl_certificate ${work}/cert.pem;
        ssl_certificate_key ${work}/key.pem;
        ssl_protocols TLSv1.3;
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
for port in "${backend_port}" "${alveole_port}" "${alveole_tls}" "${nginx_port}" "${nginx_tls}"; do
    wait_port "${port}"
done

# name pid url → "name req/s p99 cpu_per_100k"
measure() {
    local name="$1" pid="$2" url="$3" before after out
    taskset -c 1 wrk -t1 -c"${connections}" -d1s "${url}" >/dev/null  # warm-up
    before="$(ticks "${pid}")"
    out="$(taskset -c 1 wrk -t1 -c"${connections}" -d"${duration}s" --latency "${url}")"
    after="$(ticks "${pid}")"
    if echo "${out}" | grep -q -e "Non-2xx" -e "Socket errors"; then echo "${name} ${url}: errors" >&2; echo "${out}" >&2; exit 1; fi
    local rps p99 requests hz cpu
    rps="$(echo "${out}" | awk '/Requests\/sec/ {print $2}')"
    p99="$(echo "${out}" | awk '$1 == "99%" {print $2}')"
    requests="$(echo "${out}" | awk '/requests in/ {print $1}')"
    hz="$(getconf CLK_TCK)"
    cpu="$(python3 -c "print(f'{(${after} - ${before}) / ${hz} / ${requests} * 100000:.2f}')")"
    echo "${name} ${rps} ${p99} ${cpu}"
}

# name pid port → "name handshakes/s - cpu_per_10k"
measure_handshakes() {
    local name="$1" pid="$2" port="$3" before after out
    taskset -c 1 "${bin}" handshakes --connect "127.0.0.1:${port}" --host "${host}" \
        --connections "${connections}" --seconds 1 >/dev/null  # warm-up
    before="$(ticks "${pid}")"
    out="$(taskset -c 1 "${bin}" handshakes --connect "127.0.0.1:${port}" --host "${host}" \
        --connections "${connections}" --seconds "${duration}")"
    after="$(ticks "${pid}")"
    local done seconds hz
    done="$(echo "${out}" | awk '{print $2}')"
    seconds="$(echo "${out}" | awk '{print $4}')"
    hz="$(getconf CLK_TCK)"
    python3 -c "print(f'${name} {${done} / ${seconds}:.0f} - {(${after} - ${before}) / ${hz} / ${done} * 10000:.2f}')"
}

# A load sampled SAMPLES times per proxy, alternating which goes first: these shared cores
# have bursts of noise lasting seconds, so each proxy's median sample (by rate) is kept.
median() { sort -k2 -g | awk '{rows[NR] = $0} END {print rows[int((NR + 1) / 2)]}'; }
sampled() {
    local i a=() n=()
    for i in $(seq 1 "${samples}"); do
        if [ $((i % 2)) -eq 1 ]; then a+=("$("$@" alveole)"); n+=("$("$@" nginx)");
        else n+=("$("$@" nginx)"); a+=("$("$@" alveole)"); fi
    done
    printf '%s\n' "${a[@]}" | median
    printf '%s\n' "${n[@]}" | median
}
http_load() { if [ "$1" = alveole ]; then measure alveole "${alveole}" "http://${host}:${alveole_port}/"; else measure nginx "${nginx}" "http://${host}:${nginx_port}/"; fi; }
https_load() { if [ "$1" = alveole ]; then measure alveole "${alveole}" "https://${host}:${alveole_tls}/"; else measure nginx "${nginx}" "https://${host}:${nginx_tls}/"; fi; }
handshake_load() { if [ "$1" = alveole ]; then measure_handshakes alveole "${alveole}" "${alveole_tls}"; else measure_handshakes nginx "${nginx}" "${nginx_tls}"; fi; }

for run in $(seq 1 "${runs}"); do
    mapfile -t rows < <(sampled http_load; sampled https_load; sampled handshake_load)
    python3 - "${run}" "${connections}" "${duration}" "${samples}" "${rows[@]}" <<'PY'
import re, sys
run, connections, duration, samples, *rows = sys.argv[1:]
def ms(text):
    if text == "-":
        return None
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
loads = ["HTTP keep-alive", "HTTPS keep-alive", "new TLS connections"]
units = ["requests/s", "requests/s", "handshakes/s"]
print(f"\nRun {run} ({connections} connections, median of {samples} samples of {duration} s per proxy and load, proxy alone on CPU 0, load and backend on CPU 1)\n")
print("| load | proxy | per second | p99 ms | CPU s per 100k requests (10k handshakes) |")
print("|---|---|---|---|---|")
ratios = []
for i, load in enumerate(loads):
    (a, ar, ap, ac), (n, nr, np_, nc) = rows[2 * i].split(), rows[2 * i + 1].split()
    for name, rate, p99, cpu in ((a, ar, ap, ac), (n, nr, np_, nc)):
        latency = ms(p99)
        print(f"| {load} | {name} | {float(rate):.0f} | {'-' if latency is None else f'{latency:.2f}'} | {cpu} |")
    ratios.append(f"{load}: throughput {float(ar)/float(nr):.2f}x, CPU per {units[i][:-2]} {float(ac)/float(nc):.2f}x"
                  + ("" if ms(ap) is None else f", p99 {ms(ap)/ms(np_):.2f}x"))
print("\nalveole / nginx: " + "; ".join(ratios))
PY
done
