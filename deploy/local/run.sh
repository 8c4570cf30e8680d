#!/usr/bin/env bash
# `make run`: NATS with JetStream, two demo publishers and the gateway on this machine.
# Ctrl-C stops them in reverse order: gateway (drains streams), publishers, then NATS.
set -euo pipefail
set -m  # children in their own process groups: Ctrl-C reaches only this script, which stops them in order
cd "$(dirname "$0")/../.."

bin=.venv/bin
state=.run
gateway_port=${GATEWAY_PORT:-8000}
nats_port=${NATS_PORT:-4222}
export NATS_URL="nats://127.0.0.1:${nats_port}"
mkdir -p "$state/jetstream"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping..."
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

wait_for() {  # wait_for <what> <command...>
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$what did not come up; see $state/*.log" >&2
  exit 1
}

"$bin/nats-server" -js -a 127.0.0.1 -p "$nats_port" -sd "$state/jetstream" -l "$state/nats.log" &
pids+=($!)
wait_for "nats-server on port $nats_port" bash -c "exec 3<>/dev/tcp/127.0.0.1/$nats_port"

# The admin step: create the stream (or bring it to the settings), deletes and purges denied.
"$bin/python" -m contracts.provision 2>"$state/provision.log" >>"$state/provision.log" \
  || { echo "provisioning the stream failed; see $state/provision.log" >&2; exit 1; }

"$bin/python" -m publisher --source demo-1 --symbols AAPL,MSFT,GOOG,BRK.B --rate 2 \
  2>"$state/publisher-1.log" &
pids+=($!)
"$bin/python" -m publisher --source demo-2 --symbols MSFT,GOOG,AMZN,RDS-A --rate 1 \
  2>"$state/publisher-2.log" &
pids+=($!)
"$bin/python" -m gateway --port "$gateway_port" 2>"$state/gateway.log" &
pids+=($!)
wait_for "the gateway on port $gateway_port" curl -fs "http://127.0.0.1:$gateway_port/readyz"

cat <<TXT

  Live prices:  http://127.0.0.1:${gateway_port}/
  Raw stream:   curl -N 'http://127.0.0.1:${gateway_port}/stocks?symbols=AAPL,BRK.B'
  Logs:         $state/*.log        Stop: Ctrl-C

TXT
# Stop everything as soon as any part exits by itself.
wait -n
