#!/usr/bin/env bash
#
# run.sh — start the mcpvisor demo in the foreground (`make run` calls it as
# `./manifests/demo/run.sh BUILD_DIR` from the repository root).
#
# On first run it creates a development API key for tenant "demo" (manifests/demo/dev-key and
# manifests/demo/api-keys.json, both mode 0600 and git-ignored), keeps run-time state in
# manifests/demo/run/ (git-ignored), then checks the configuration,
# prints a curl session and an MCP client configuration to try, and execs the daemon.
# It never overwrites an existing key pair; delete both files to get a new key.

set -euo pipefail

die() {
    echo "run.sh: $*" >&2
    exit 1
}

[ $# -le 1 ] || die "usage: $0 [BUILD_DIR]"
build_arg=${1:-build}
[ -d "$build_arg" ] || die "build folder '$build_arg' not found; run 'make' first"
build=$(cd "$build_arg" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

demo=manifests/demo
config=$demo/mcpvisor.json
key_file=$demo/dev-key
keys_file=$demo/api-keys.json
mcpvisor=$build/mcpvisor

[ -x "$mcpvisor" ] || die "$mcpvisor not found; run 'make' first"
# The demo manifest names its command relative to $demo, as ../../build/demo-server.
[ -x build/demo-server ] || die "build/demo-server not found (the demo manifest runs it); run 'make'"

# --- first run: a development API key ---
if [ ! -s "$key_file" ] || [ ! -s "$keys_file" ]; then
    echo "run.sh: creating a development API key for tenant 'demo' (scope demo:read)"
    out=$("$mcpvisor" keygen --tenant demo --user dev --agent curl --scope demo:read) ||
        die "mcpvisor keygen failed"
    key=$(printf '%s\n' "$out" | sed -n 1p)
    record=$(printf '%s\n' "$out" | sed -n 2p)
    # The key goes into shell commands and JSON below: accept only token characters.
    [[ $key =~ ^[A-Za-z0-9._~+/=-]+$ ]] || die "mcpvisor keygen printed an unexpected key line"
    [[ $record == \{*\} ]] || die "mcpvisor keygen printed an unexpected record line"

    # Written under umask 077 to temporary names, then renamed: never a readable or half file.
    (
        umask 077
        printf '%s\n' "$key" >"$key_file.tmp"
        printf '{"keys":[%s]}\n' "$record" >"$keys_file.tmp"
        chmod 0600 "$key_file.tmp" "$keys_file.tmp"
    )
    mv -f "$keys_file.tmp" "$keys_file"
    mv -f "$key_file.tmp" "$key_file"
fi
key=$(cat "$key_file")

# Run-time state (the audit log: session ids, argument hashes) lives in $demo/run, which git
# ignores, so it cannot be committed by mistake.
mkdir -p "$demo/run"
chmod 0700 "$demo/run"

# --- check the configuration before printing anything that depends on it ---
"$mcpvisor" check -c "$config" || die "the demo configuration does not pass 'mcpvisor check'"

url=http://127.0.0.1:8080/servers/demo/mcp
cat <<EOF

mcpvisor demo: server "demo" (tools echo, word_count, utc_time) at $url

Try it with curl from another terminal:

KEY=\$(cat '$root/$key_file')
URL=$url
SID=\$(curl -sS -D - "\$URL" \\
    -H "Authorization: Bearer \$KEY" \\
    -H 'Content-Type: application/json' \\
    -H 'Accept: application/json, text/event-stream' \\
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}' \\
    | tee /dev/stderr | tr -d '\r' | awk 'tolower(\$1) == "mcp-session-id:" { print \$2 }')
echo; echo "session: \$SID"
mcp() {
    curl -sS "\$URL" -w '  [HTTP %{http_code}]\n' \\
        -H "Authorization: Bearer \$KEY" \\
        -H "Mcp-Session-Id: \$SID" \\
        -H 'MCP-Protocol-Version: 2025-11-25' \\
        -H 'Content-Type: application/json' \\
        -H 'Accept: application/json, text/event-stream' \\
        -d "\$1"
}
mcp '{"jsonrpc":"2.0","method":"notifications/initialized"}'
mcp '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'
mcp '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello, mcpvisor"}}}'
mcp '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"word_count","arguments":{"text":"one two\nthree"}}}'
curl -sS -X DELETE "\$URL" -H "Authorization: Bearer \$KEY" -H "Mcp-Session-Id: \$SID" -w '[HTTP %{http_code}]\n'

Or point an MCP client at it (the key is a development key for this machine only):

{"mcpServers":{"demo":{"type":"http","url":"$url","headers":{"Authorization":"Bearer $key"}}}}

Audit log: $root/$demo/run/audit.jsonl    Stop: Ctrl-C

EOF

exec "$mcpvisor" run -c "$config"
