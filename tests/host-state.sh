#!/usr/bin/env bash
# What tests could leave behind on this host, one line per object: alveole's nftables tables
# in the host's namespace, Docker objects made for test nodes, network namespaces, test
# images and temporary files. `.ci/test` lists it before and after the suite: anything new
# afterwards is a test that did not clean up.
set -uo pipefail

if command -v nft >/dev/null; then
  nft list tables 2>/dev/null | awk '$3 ~ /^alveole_/ {print "nft table: " $2 " " $3}'
fi
if command -v docker >/dev/null && docker version >/dev/null 2>&1; then
  docker ps -a --filter label=coop.alveole.node --format 'container: {{.Names}}'
  docker volume ls --filter label=coop.alveole.node --format 'volume: {{.Name}}'
  docker network ls --format '{{.Name}}' | grep '^alveole-' | sed 's/^/network: /'
  # The test image itself is kept on purpose (built once per engine).
  docker images --format '{{.Repository}}:{{.Tag}}' | grep '^alveole-test/' \
    | grep -v '^alveole-test/busybox:' | sed 's/^/image: /'
fi
ip netns list 2>/dev/null | awk '{print "netns: " $1}'
find "${TMPDIR:-/tmp}" -maxdepth 1 \( -name 'alveole-*' -o -name 'org.chromium.*' \) \
  -printf 'temporary file: %f\n' 2>/dev/null
exit 0
