#!/usr/bin/env bash
# Schema-driven fuzzing: schemathesis (PyPI) generates requests from the panel's own OpenAPI
# document and fails on any 5xx. The server is the real binary on SQLite, seeded with one item
# of each kind, whose ids most generated requests use (the OpenAPI links lead the stateful
# phase to the items it makes itself). Bounded: a fixed number of examples.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v st >/dev/null 2>&1; then
    if [ -n "${CI:-}" ]; then echo "schemathesis is required under CI (.ci/run installs it)" >&2; exit 1; fi
    echo "!!!! SKIPPED: API fuzzing (schemathesis is not installed: pip install schemathesis) !!!!"
    exit 0
fi
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${CARGO_TARGET_DIR:-target}/debug/alveole" serve --database-url "sqlite://${work}/fuzz.db" --listen "127.0.0.1:${port}" --log warn --local-agent false \
    --agent-listen 127.0.0.1:0 --tls-dir "${work}/tls" --audit-key-file "${work}/audit.key" --secrets-key-file "${work}/secrets.key" \
    >"${work}/serve.log" 2>&1 &
server=$!
trap 'kill ${server} 2>/dev/null || true; rm -rf "${work}"' EXIT
for _ in $(seq 1 100); do
    grep -q "listening on" "${work}/serve.log" 2>/dev/null && break
    sleep 0.1
done
if ! grep -q "listening on" "${work}/serve.log"; then
    echo "the panel did not start:" >&2
    cat "${work}/serve.log" >&2
    exit 1
fi
token="$(grep -o 'alv_[A-Za-z0-9_-]*' "${work}/serve.log" | head -n 1)"
base="http://127.0.0.1:${port}"
auth="Authorization: Bearer ${token}"
# Real items for the fuzzer to reach past lookup: most generated requests for an item use one
# of these ids (the rest, random ones).
post() {
    curl -fsS -X POST "${base}$1" -H "${auth}" -H 'content-type: application/json' -d "$2"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
provider="$(post /api/v1/providers '{"name":"Fuzz"}' | field id)"
node="$(post /api/v1/nodes "{\"provider_id\":\"${provider}\",\"name\":\"fuzz\",\"capacity\":{\"cpu_millis\":64000,\"memory_bytes\":68719476736,\"disk_bytes\":1099511627776}}" | field id)"
member="$(post /api/v1/members '{"display_name":"Fuzz","email":"fuzz@example.org"}' | field id)"
site="$(post /api/v1/sites "{\"owner_id\":\"${member}\",\"primary_domain\":\"fuzz.example.org\",\"image\":\"registry.example.org/fuzz:1\"}" | field id)"
token="$(post "/api/v1/members/${member}/tokens" '{"name":"fuzz","scope":"read"}' | field id)"
pool="$(post /api/v1/ip-pools "{\"provider_id\":\"${provider}\",\"prefix\":\"192.0.2.0/28\"}" | field id)"
address="$(post "/api/v1/ip-pools/${pool}/allocations" "{\"node_id\":\"${node}\"}" | field address)"
spare="$(post /api/v1/nodes "{\"provider_id\":\"${provider}\",\"name\":\"fuzz-empty\",\"capacity\":{\"cpu_millis\":1000,\"memory_bytes\":1073741824,\"disk_bytes\":10737418240}}" | field id)"
evacuation="$(post /api/v1/evacuations "{\"node_id\":\"${spare}\"}" | field id)"
# An agent's credential, as a node gets it (a join token, a key and its signing request): the
# agents' routes are fuzzed over mutual TLS with it, on the agents' listener.
agents="$(grep -o 'Agents enrol at https://[0-9.:]*' "${work}/serve.log" | sed 's|.*https://||')"
enrol() { # node, name: the agent's key and certificate in ${work}/<name>.{key,pem}
    local token
    token="$(post "/api/v1/nodes/$1/join-token" '{}' | field join_token)"
    openssl ecparam -name prime256v1 -genkey -noout -out "${work}/$2.key" 2>/dev/null
    openssl req -new -key "${work}/$2.key" -subj "/CN=$2" -out "${work}/$2.csr" 2>/dev/null
    python3 - "${token}" "${work}/$2.csr" >"${work}/$2-enroll.json" <<'PY'
import json, sys
print(json.dumps({"join_token": sys.argv[1], "csr_pem": open(sys.argv[2]).read()}))
PY
    curl -fsS --cacert "${work}/tls/ca.pem" -X POST "https://${agents}/api/v1/agent/enroll" \
        -H 'content-type: application/json' -d @"${work}/$2-enroll.json" | field certificate_pem >"${work}/$2.pem"
}
enrol "${node}" agent
# A second node whose agent reports where other agents reach it, so that a site and an address
# can be on their way to it: the moves' routes then have a real move to act on.
target="$(post /api/v1/nodes "{\"provider_id\":\"${provider}\",\"name\":\"fuzz-b\",\"capacity\":{\"cpu_millis\":64000,\"memory_bytes\":68719476736,\"disk_bytes\":1099511627776}}" | field id)"
enrol "${target}" target
curl -fsS -o /dev/null --cacert "${work}/tls/ca.pem" --cert "${work}/target.pem" --key "${work}/target.key" \
    -X POST "https://${agents}/api/v1/agent/status" -H 'content-type: application/json' \
    -d '{"generation":null,"sites":[],"resources":{"cpus":2,"load_1m":0,"memory_total_bytes":8589934592,"memory_available_bytes":8589934592,"disk_total_bytes":107374182400,"disk_available_bytes":107374182400},"agent_version":"fuzz","endpoints":{"peer":"127.0.0.1:9","ingress":"127.0.0.1:9"}}'
# Several of each, since the fuzzer cancels, fails and finishes them as it goes.
site_moves=""
addresses="\"${address}\""
for i in 1 2 3 4 5 6; do
    moving="$(post /api/v1/sites "{\"owner_id\":\"${member}\",\"primary_domain\":\"moving-${i}.example.org\",\"image\":\"registry.example.org/fuzz:1\",\"node_id\":\"${node}\"}" | field id)"
    move="$(post "/api/v1/sites/${moving}/move" "{\"to_node\":\"${target}\"}" | field id)"
    site_moves="${site_moves}${site_moves:+, }\"${move}\""
    moved="$(post "/api/v1/ip-pools/${pool}/allocations" "{\"node_id\":\"${node}\"}" | field address)"
    post "/api/v1/ip-allocations/${moved}/move" "{\"to_node\":\"${target}\"}" >/dev/null
    addresses="${addresses}, \"${moved}\""
done
cat >"${work}/schemathesis.toml" <<TOML
[dictionaries]
providers = { values = ["${provider}"] }
nodes = { values = ["${node}"] }
members = { values = ["${member}"] }
sites = { values = ["${site}"] }
tokens = { values = ["${token}"] }
pools = { values = ["${pool}"] }
addresses = { values = [${addresses}] }
evacuations = { values = ["${evacuation}"] }
site_moves = { values = [${site_moves}] }

# What bodies and queries refer to.
[parameters]
"body.provider_id" = { dictionary = "providers", probability = 0.8 }
"body.node_id" = { dictionary = "nodes", probability = 0.8 }
"body.to_node" = { dictionary = "nodes", probability = 0.8 }
"body.owner_id" = { dictionary = "members", probability = 0.8 }
"body.hand_sites_to" = { dictionary = "members", probability = 0.8 }
"body.site_id" = { dictionary = "sites", probability = 0.8 }
"query.node_id" = { dictionary = "nodes", probability = 0.8 }
"query.provider_id" = { dictionary = "providers", probability = 0.8 }
"query.owner_id" = { dictionary = "members", probability = 0.8 }
TOML
for binding in providers:providers nodes:nodes members:members sites:sites tokens:tokens \
    ip-pools:pools evacuations:evacuations site-moves:site_moves agent/site-moves:site_moves; do
    cat >>"${work}/schemathesis.toml" <<TOML

[[operations]]
include-path-regex = "^/api/v1/${binding%%:*}/"
parameters = { "path.id" = { dictionary = "${binding##*:}", probability = 0.8 } }
TOML
done
cat >>"${work}/schemathesis.toml" <<TOML

[[operations]]
include-path-regex = "^/api/v1/ip-allocations/"
parameters = { "path.address" = { dictionary = "addresses", probability = 0.8 } }
TOML

# One schemathesis run: its configuration, the schema's address, its log, and what else it
# takes; bounded and seeded alike.
st_run() {
    local config="$1" schema="$2" log="$3"
    shift 3
    st --config-file "${config}" run "${schema}" "$@" \
        --checks not_a_server_error \
        --max-examples "${FUZZ_EXAMPLES:-60}" \
        --workers 2 \
        --request-timeout 10 \
        --seed 1 2>&1 | tee "${log}"
    return "${PIPESTATUS[0]}"
}
fuzz() {
    st_run "${work}/schemathesis.toml" "${base}/api/v1/openapi.json" "${work}/fuzz.log" \
        --header "${auth}" --exclude-path-regex '^/api/v1/agent/'
}
# The agents' routes, as an agent calls them.
fuzz_agents() {
    cat "${work}/agent.pem" "${work}/agent.key" >"${work}/agent-bundle.pem"
    # The long poll answers at once (it would otherwise wait as long as asked, by design).
    { printf '[parameters]\nwait = 0\n\n[dictionaries]\nsite_moves = { values = [%s] }\n' "${site_moves}"
      printf '\n[[operations]]\ninclude-path-regex = "^/api/v1/agent/site-moves/"\n'
      printf 'parameters = { "path.id" = { dictionary = "site_moves", probability = 0.8 } }\n'
    } >"${work}/agents.toml"
    st_run "${work}/agents.toml" "https://${agents}/api/v1/openapi.json" "${work}/fuzz-agents.log" \
        --include-path-regex '^/api/v1/agent/' \
        --request-cert "${work}/agent-bundle.pem" --tls-verify "${work}/tls/ca.pem"
}
# schemathesis 4.32 on Python 3.11 now and then crashes inside hypothesis ("AST constructor
# recursion depth mismatch"). That is the tool failing, not the server: run again once in that
# case only. A server error (or any other failure) fails at once.
once_more_if_the_tool_crashed() {
    local run="$1" log="$2"
    if ! "${run}"; then
        if grep -q "Runtime Error" "${log}" && ! grep -qi "server error" "${log}"; then
            echo "schemathesis itself crashed; running it once more"
            "${run}"
        else
            return 1
        fi
    fi
}
# First, while the agent's credential holds (the main run revokes agents' credentials).
once_more_if_the_tool_crashed fuzz_agents "${work}/fuzz-agents.log"
once_more_if_the_tool_crashed fuzz "${work}/fuzz.log"
if grep -qi "panicked" "${work}/serve.log"; then
    echo "the server panicked during fuzzing:" >&2
    cat "${work}/serve.log" >&2
    exit 1
fi
echo "API fuzzing: no server error"
