#!/bin/sh
# The compose file's demo agent: on first start it makes itself an activation with the
# server's admin token (read from the server's volume, mounted read-only) and registers;
# then it runs. A real node registers with an activation an operator gives it.
set -eu
state=/var/lib/fleetrun-agent
server=https://server:8470
ca=/server-data/tls/ca.pem
if [ ! -f "$state/identity.json" ]; then
    until [ -f /server-data/admin.token ] && [ -f "$ca" ]; do sleep 1; done
    activation=$(fleetrun activations create --server "$server" --ca-file "$ca" \
        --token "$(cat /server-data/admin.token)" --tag env=compose --json)
    id=$(printf '%s' "$activation" | python -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    code=$(printf '%s' "$activation" | python -c 'import json,sys; print(json.load(sys.stdin)["code"])')
    fleetrun-agent register --server "$server" --ca-file "$ca" --state-dir "$state" \
        --activation-id "$id" --activation-code "$code" --name "${AGENT_NAME:-compose-agent}"
fi
exec fleetrun-agent run --state-dir "$state"
