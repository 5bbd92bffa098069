#!/usr/bin/env bash
# The alternative users script today (figure 6): poll the game's state endpoints with curl and
# copy each state to the cluster with `kubectl patch`, once a second, patching every time.
#
#   naive_probe.sh KUBECONFIG NAMESPACE NAME URL0 URL1 ITERATIONS CACHE_DIR
#
# URL0's state becomes the GameServer's spec.opsState, URL1's the pod annotation
# example.com/state, like the kidecar config it is compared with. The only concession to
# fairness: the loop sleeps the rest of each second (not a full `sleep 1`), so that it probes at
# the same rate as kidecar. ITERATIONS bounds the loop. Prints `write` for each PATCH sent
# (`kubectl patch` sends one GET and one PATCH; discovery is cached in CACHE_DIR).
set -u
kubeconfig=$1 namespace=$2 name=$3 url0=$4 url1=$5 iterations=$6 cache_dir=$7
k() { kubectl --kubeconfig "$kubeconfig" --cache-dir "$cache_dir" -n "$namespace" "$@" >/dev/null; }
state_of() { curl -s --max-time 2 "$1" | sed -n 's/.*"state": *"\([^"]*\)".*/\1/p'; }

for ((i = 0; i < iterations; i++)); do
  started=${EPOCHREALTIME/./}
  s0=$(state_of "$url0")
  [ -n "$s0" ] && k patch gameserver "$name" --type=merge -p "{\"spec\":{\"opsState\":\"$s0\"}}" &&
    echo write
  s1=$(state_of "$url1")
  [ -n "$s1" ] && k patch pod "$name" --type=merge \
    -p "{\"metadata\":{\"annotations\":{\"example.com/state\":\"$s1\"}}}" && echo write
  left=$((1000000 - (${EPOCHREALTIME/./} - started)))
  if ((left > 0)); then sleep "$(printf '0.%06d' "$left")"; fi
done
