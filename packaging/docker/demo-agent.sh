#!/bin/sh
# The compose file's demo agent: on first start it makes itself an activation with the
# server's admin token (read from the server's volume, mounted read-only) and registers;
# then it runs. A real node registers with an activation an operator gives it.
#
# DEMO_SERVER (default https://server:8470), DEMO_SERVER_DATA (the server's data dir,
# default /server-data) and FLEETRUN_AGENT_STATE_DIR (default /var/lib/fleetrun-agent)
# say where things are.
set -eu
state="${FLEETRUN_AGENT_STATE_DIR:-/var/lib/fleetrun-agent}"
server="${DEMO_SERVER:-https://server:8470}"
data="${DEMO_SERVER_DATA:-/server-data}"
ca="$data/tls/ca.pem"
field() { python -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }
if [ ! -f "$state/identity.json" ]; then
    until [ -f "$data/admin.token" ] && [ -f "$ca" ]; do sleep 1; done
    activation=$(fleetrun activations create --server "$server" --ca-file "$ca" \
        --token "$(cat "$data/admin.token")" --tag env=compose --json)
    fleetrun-agent register --server "$server" --ca-file "$ca" --state-dir "$state" \
        --activation-id "$(printf '%s' "$activation" | field id)" \
        --activation-code "$(printf '%s' "$activation" | field code)" \
        --name "${AGENT_NAME:-compose-agent}"
fi
exec fleetrun-agent run --state-dir "$state"
