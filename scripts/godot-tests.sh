#!/usr/bin/env bash
# In-engine tests of the Sustenet GDExtension in a real headless Godot 4 (called by
# scripts/test.sh). Installs Godot (idempotent), builds the extension and the `sustenet`
# command, imports demo_project, makes keys in a temp folder, starts a real `sustenet master`,
# then runs each test in demo_project/tests/ with an outer timeout:
#
#   fresh_import    a brand-new project with addons/sustenet copied in: first and second
#                   --import, --editor --quit and a script using the classes all exit 0
#   client_cluster  SustenetClient (this process) <-> SustenetCluster (a second Godot process)
#   errors          wrong public key, dead port, unknown cluster, master going away
#   variant         send_var / decode_var round trips through a cluster echo
#   stats           SustenetCluster.get_stats() and its /metrics endpoint (metrics_bind) after
#                   a client's echoes and goodbye
#   state_window    SustenetCluster.state_window_ms: its default, ERR_INVALID_PARAMETER and the
#                   message past 0..1000; two players side by side each receive the other's
#                   set_player_state through a 2 ms window
#   reconnect       the client reaches the cluster through a proxy the test cuts and restores:
#                   reconnecting / player_connection_lost, then reconnected / player_reconnected,
#                   same player id, every reliable packet once and in order both ways
#   flood           10,000 reliable packets into a client within a second (all in one process)
#   flood_remote    the same, from a SustenetCluster in a second Godot process
#   inbound_flood   one player floods a SustenetCluster faster than its game drains: its
#                   unreliable packets are dropped, its reliable flood gets it kicked, and
#                   another player's reliable packets all arrive
#   export          the demo cluster exported headless, run as a real process, probed by
#                   `sustenet probe`, then played by two GDScript clients (test_demo_cluster.gd),
#                   then stopped through its --stop-file: it must exit 0
#   mp              ENet vs Sustenet: the same @rpc / MultiplayerSpawner / MultiplayerSynchronizer
#                   game (tests/mp_game.gd) in three Godot processes (server + 2 clients) over
#                   ENetMultiplayerPeer, then over SustenetMultiplayerPeer; each run's checks
#                   pass and both print the same OUTCOME lines
#   mp_handoff      the same game's client moved from cluster a to cluster b with transfer_peer
#                   under a reliable @rpc every frame (three Godot processes): same peer object,
#                   spawns switch, every accepted @rpc arrives exactly once
#   mp_reconnect    mp_game.gd's server and client (one process, two SceneMultiplayers), the link
#                   cut and restored through the proxy: no server_disconnected, @rpcs once in order
#   mp_features     relay off, interest management (update_visibility), refuse_new_connections,
#                   close() then a new peer on the same node, disconnect_peer (one process)
#   mp_bad_input    garbage from clients into the cluster's SceneMultiplayer: the game goes on, a
#                   good client is served, each bad client alone is dropped
#   mp_bench        MultiplayerSynchronizer throughput, N = 100 and 500 nodes at 20 Hz, over ENet
#                   and over Sustenet (server + client process each); prints BENCH lines, asserts
#                   only that updates arrive (figures go to docs/performance.md)
#   mp_relay        what SceneMultiplayer's relay costs: M = 5, 10, 20 clients in one process, each
#                   with a 20 Hz synchronizer, relay on and off; prints RELAY lines (measured only)
#   godot_way       the Godot-way demo (godot_way/): two clusters running main.tscn side by side and
#                   a client (test_godot_way.gd) that chats and walks over the border; the game
#                   scripts (world.gd, player.gd) must not mention Sustenet
#   export_godot_way  the demo cluster export run as the Godot-way demo's clusters
#                   (--godot-way: godot_way/main.tscn, west and east), played by test_godot_way.gd
#   web_client      SustenetWebClient (pure GDScript, WebSocketPeer over wss with the development
#                   certificate) against a real `sustenet up` beside a native SustenetClient:
#                   login, join, reliable and unreliable echoes, both players in one fragment
#                   seeing each other, chat both ways, a handoff, a cut link that reconnects
#   portal          the demo world's portal (cluster/portal.gd): the demo cluster as the world, a
#                   real `sustenet agent` whose template "dungeon" runs the headless export with
#                   --dungeon=crypt; three clients (test_portal.gd): a party of two walks in, is
#                   moved to the fresh instance, walks out back to the world; the empty instance
#                   is stopped (stop_when_empty_sec) and exits 0; then an instance whose agent is
#                   killed with -9 exits too; no export process is left; then `sustenet up
#                   --dungeon-export` with the same export: up's own agent spawns and stops a
#                   dungeon (exit 0), up exits 0, no export process is left
#   web_mp          SustenetWebMultiplayerPeer (pure GDScript) and a native SustenetMultiplayerPeer
#                   as clients of a SustenetCluster running SustenetMultiplayerPeer as server (one
#                   process; ws:// on loopback; a real `sustenet master` with its WebSocket port on):
#                   spawns, synchronizer positions, reliable / unreliable / ordered @rpcs both ways
#                   and through the relay, close and a new peer (a new peer id; no engine error
#                   until the synchronizers run again), transfer_peer of the web player to
#                   a second cluster, kicks with REASON_KICKED
#   agones          SustenetCluster as an Agones GameServer: the addon built with the cargo
#                   feature `agones` (the library is built here once more, about a minute of
#                   linking; the default addon stays without it), tests/test_agones.gd in a
#                   project of its own, the SDK sidecar played by the recording SDK server of
#                   rust/server/tests/agones.rs (examples/agones_sdk_recorder.rs): Ready after
#                   registration, health pings, PlayerConnect/Disconnect, Shutdown on quit
#   border          server meshing: the demo cluster as "West Cluster" and "East Cluster" in two
#                   Godot processes (border_cluster_node.gd); a client (test_border.gd) walks
#                   over the border and is handed over with its state; three verdicts
#
# A test fails on a non-zero exit, a timeout, `SCRIPT ERROR`, `ObjectDB instances leaked`,
# a Rust panic (`[panic `) or a signal handler with the wrong arguments; its log is printed.
# Ends with `godot: N passed, M failed`; exit status 1 when anything failed.
#
#   scripts/godot-tests.sh [--no-build] [--only=errors,variant,...] [--keep]
#     --no-build  skip the Godot install and the builds (use what is there)
#     --only      run only these tests
#     --keep      keep the temp folder (keys, logs, export) and print its path
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

no_build=0; only=""; keep=0
for a in "$@"; do
    case "$a" in
        --no-build) no_build=1 ;;
        --only=*) only=",${a#--only=}," ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,/^set -uo/{/^set -uo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "godot-tests.sh: unknown argument $a (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'godot-tests: %s\n' "$*"; }
die() { printf 'godot-tests: error: %s\n' "$*" >&2; exit 1; }
wanted() { [ -z "$only" ] || [[ "$only" == *",$1,"* ]]; }

GODOT="$REPO/scripts/godot.sh"
SUSTENET="${CARGO_TARGET_DIR:-$REPO/target}/debug/sustenet"
PROJECT="$REPO/demo_project"
START=$(date +%s)

# --- setup -------------------------------------------------------------------------------
if [ "$no_build" -eq 0 ]; then
    say "installing Godot (idempotent)"
    scripts/install-godot.sh || die "scripts/install-godot.sh failed"
    say "building the extension (debug + release)"
    scripts/build-godot.sh || die "scripts/build-godot.sh failed"
    say "building the sustenet command"
    cargo build -p sustenet-cli || die "cargo build -p sustenet-cli failed"
fi
[ -x "$SUSTENET" ] || die "$SUSTENET not found (cargo build -p sustenet-cli)"
[ -e "$PROJECT/addons/sustenet/bin/libsustenet.debug.so" ] || die "extension not built (scripts/build-godot.sh)"

T=$(mktemp -d /tmp/sustenet-godot-tests.XXXXXX)
bg_pids=()
cleanup() {
    local p
    for p in "${bg_pids[@]}"; do
        kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
    done
    sleep 0.3
    for p in "${bg_pids[@]}"; do
        kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [ "$keep" -eq 1 ]; then say "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg <log> <cmd...>: start in its own process group (killed by the trap); sets BG_PID.
start_bg() {
    local log=$1; shift
    setsid "$@" >"$log" 2>&1 &
    BG_PID=$!
    bg_pids+=("$BG_PID")
}

# Free ports (TCP and UDP both unused), distinct.
used_ports() { ss -Htuan 2>/dev/null | awk '{print $5}' | sed 's/.*://' | sort -u; }
free_ports() {
    local n=$1 out=() p used
    used=" $(used_ports | tr '\n' ' ') "
    while [ ${#out[@]} -lt "$n" ]; do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
        [[ "$used" == *" $p "* ]] && continue
        [[ " ${out[*]} " == *" $p "* ]] && continue
        out+=("$p")
    done
    echo "${out[@]}"
}

# wait_for_line <log> <regex> <seconds> <pid>: 0 when the line shows up, 1 otherwise.
wait_for_line() {
    local deadline=$(( $(date +%s) + $3 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        grep -qE "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || { grep -qE "$2" "$1" 2>/dev/null; return; }
        sleep 0.2
    done
    return 1
}

passed=0; failed=0; failed_names=()
# verdict <name> <log> <exit code>: applies the failure rules, prints the log on failure.
verdict() {
    local name=$1 log=$2 rc=$3 why=()
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && why+=("timed out")
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && why+=("exit code $rc")
    grep -q 'SCRIPT ERROR' "$log" && why+=("SCRIPT ERROR")
    grep -q 'ObjectDB instances leaked' "$log" && why+=("leaked objects")
    grep -qF '[panic ' "$log" && why+=("Rust panic")
    grep -q 'Error calling from signal' "$log" && why+=("signal handler called with the wrong arguments")
    grep -q '^FAIL: ' "$log" && why+=("$(grep -c '^FAIL: ' "$log") failed check(s)")
    if [ ${#why[@]} -eq 0 ]; then
        passed=$((passed + 1))
        local n; n=$(grep -c '^PASS: ' "$log")
        if [ "$n" -gt 0 ]; then say "PASS $name ($n checks)"; else say "PASS $name"; fi
    else
        failed=$((failed + 1)); failed_names+=("$name")
        say "FAIL $name: $(IFS=,; echo "${why[*]}")"
        echo "----- log of $name ($log) -----"
        sed -e 's/\x1b\[[0-9;]*m//g' "$log" | tail -n 150
        echo "----- end of $name -----"
    fi
}

run_godot() {  # run_godot <seconds> <log> <godot args...>
    local secs=$1 log=$2; shift 2
    timeout -k 5 "$secs" "$GODOT" --headless --path "$PROJECT" "$@" >"$log" 2>&1
}

# --- a brand-new project with the addon copied in, as a new user makes one ---------------
# Its first import finds the extension mid-scan; it must exit 0 (see rust/godot/src/
# first_import.rs), and so must a second import, a headless editor start and a script that
# uses the classes.
if wanted fresh_import; then
    say "running fresh_import (a new project with the addon copied in)"
    F="$T/fresh"; mkdir -p "$F/project/addons"
    printf 'config_version=5\n\n[application]\nconfig/name="Fresh"\n' >"$F/project/project.godot"
    cp -r addons/sustenet "$F/project/addons/"
    cp demo_project/tests/fresh_project_check.gd "$F/project/check.gd"
    flog="$F/fresh_import.log"; : >"$flog"
    frc=0
    fresh_step() {  # fresh_step <what> <godot args...>: runs Godot on the fresh project, logs, checks the exit code
        local what=$1; shift
        timeout -k 5 180 "$GODOT" --headless --path "$F/project" "$@" >"$F/step.log" 2>&1
        local rc=$?
        { echo "== $what: godot $* (exit $rc)"; cat "$F/step.log"; } >>"$flog"
        if [ "$rc" -ne 0 ]; then echo "FAIL: $what exited $rc" >>"$flog"; frc=1; fi
    }
    fresh_step "first import" --import
    if grep -qx 'res://addons/sustenet/sustenet.gdextension' "$F/project/.godot/extension_list.cfg" 2>/dev/null; then
        echo "PASS: the first import listed the extension in .godot/extension_list.cfg" >>"$flog"
    else
        echo "FAIL: .godot/extension_list.cfg does not list the extension after the first import" >>"$flog"
    fi
    fresh_step "second import" --import
    fresh_step "editor start and quit" --editor --quit
    fresh_step "a script using the classes" -s res://check.gd
    verdict fresh_import "$flog" "$frc"
fi

# --- demo_project import
say "importing demo_project"
run_godot 180 "$T/import.log" --import || { sed 's/\x1b\[[0-9;]*m//g' "$T/import.log" | tail -50; die "godot --import of demo_project failed"; }

# --- keys and a real master --------------------------------------------------------------
read -r MASTER_PORT DEAD_PORT OWN_MASTER_PORT CL_PORT W_MASTER_PORT W_CLUSTER_PORT EXPORT_PORT FL_PORT \
    WEST_PORT EAST_PORT MP_ENET_PORT MP_PORT MP_A_PORT MP_B_PORT MP_BENCH_PORT GW_WEST_PORT GW_EAST_PORT GWX_WEST_PORT GWX_EAST_PORT \
    PORTAL_WORLD_PORT PORTAL_FIRST_PORT <<<"$(free_ports 21)"
mkdir -p "$T/keys" "$T/own-master-keys"
"$SUSTENET" keygen --dir "$T/keys" --master >"$T/keygen.log" 2>&1 || die "sustenet keygen --master failed"
"$SUSTENET" keygen --dir "$T/keys" --name test_cluster >>"$T/keygen.log" 2>&1 || die "sustenet keygen failed"
"$SUSTENET" keygen --dir "$T/keys" --name export_cluster >>"$T/keygen.log" 2>&1 || die "sustenet keygen failed"
"$SUSTENET" keygen --dir "$T/keys" --name flood_cluster >>"$T/keygen.log" 2>&1 || die "sustenet keygen failed"
"$SUSTENET" keygen --dir "$T/keys" --name west_cluster >>"$T/keygen.log" 2>&1 || die "sustenet keygen failed"
"$SUSTENET" keygen --dir "$T/keys" --name east_cluster >>"$T/keygen.log" 2>&1 || die "sustenet keygen failed"
for k in mp_cluster mp_a mp_b mp_bench gw_west gw_east gwx_west gwx_east portal_world; do
    "$SUSTENET" keygen --dir "$T/keys" --name "$k" >>"$T/keygen.log" 2>&1 || die "sustenet keygen failed"
done
"$SUSTENET" keygen --dir "$T/keys" --agent --name portal_agent >>"$T/keygen.log" 2>&1 || die "sustenet keygen --agent failed"
"$SUSTENET" keygen --dir "$T/keys" --admin --name admin_key >>"$T/keygen.log" 2>&1 || die "sustenet keygen --admin failed"
PUB=$(tr -d '[:space:]' <"$T/keys/master.pub")
cat >"$T/master.toml" <<TOML
[all]
server_name = "Godot test master"
port = $MASTER_PORT
bind = "127.0.0.1"
key_dir = "$T/keys"

[master]
key_file = "$T/keys/master.key"
TOML
start_bg "$T/master.log" "$SUSTENET" master --config "$T/master.toml"
MASTER_PID=$BG_PID
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$MASTER_PORT") 2>/dev/null && break
    kill -0 "$MASTER_PID" 2>/dev/null || { cat "$T/master.log"; die "sustenet master exited"; }
    sleep 0.1
done
say "sustenet master on 127.0.0.1:$MASTER_PORT (pid $MASTER_PID), keys in $T/keys"

# --- tests ---------------------------------------------------------------------------------
# shellcheck source=scripts/lib/godot-portal-test.sh
. "$REPO/scripts/lib/godot-portal-test.sh"
# shellcheck source=scripts/lib/godot-agones-test.sh
. "$REPO/scripts/lib/godot-agones-test.sh"
if wanted client_cluster; then
    say "running client_cluster (two Godot processes)"
    start_bg "$T/cluster_node.log" timeout -k 5 90 "$GODOT" --headless --path "$PROJECT" \
        -s res://tests/test_cluster_node.gd -- --master-port="$MASTER_PORT" \
        --key-path="$T/keys/test_cluster" --key-name=test_cluster --port="$CL_PORT" --name=test_cluster
    CL_PID=$BG_PID
    wait_for_line "$T/cluster_node.log" '^CLUSTER_READY' 40 "$CL_PID" || say "the cluster process did not report CLUSTER_READY"
    run_godot 90 "$T/client_cluster.log" -s res://tests/test_client_cluster.gd -- \
        --master-port="$MASTER_PORT" --master-key="$PUB" --cluster-name=test_cluster
    rc=$?
    wait "$CL_PID"; cl_rc=$?
    verdict "client_cluster (client process)" "$T/client_cluster.log" "$rc"
    verdict "client_cluster (cluster process)" "$T/cluster_node.log" "$cl_rc"
fi

if wanted errors; then
    say "running errors"
    run_godot 120 "$T/errors.log" -s res://tests/test_errors.gd -- --master-port="$MASTER_PORT" \
        --master-key="$PUB" --dead-port="$DEAD_PORT" --key-dir="$T/own-master-keys" --own-master-port="$OWN_MASTER_PORT"
    verdict errors "$T/errors.log" $?
fi

# run_world <name> <seconds>: tests/test_<name>.gd with its own SustenetMaster, SustenetCluster
# and SustenetClient in one Godot process (test_base.gd's start_world).
run_world() {
    run_godot "$2" "$T/$1.log" -s "res://tests/test_$1.gd" -- --key-dir="$T/keys" \
        --key-name=test_cluster --master-port="$W_MASTER_PORT" --cluster-port="$W_CLUSTER_PORT"
    verdict "$1" "$T/$1.log" $?
}

if wanted variant; then
    say "running variant"
    run_world variant 90
fi

if wanted stats; then
    say "running stats (get_stats and the cluster's /metrics)"
    run_world stats 60
fi

if wanted state_window; then
    say "running state_window (SustenetCluster.state_window_ms)"
    run_world state_window 60
fi

if wanted instances; then
    say "running instances (spawn_instance and instance_failed)"
    run_world instances 60
fi

if wanted inbound_flood; then
    say "running inbound_flood (one player floods the cluster; the other plays on)"
    run_world inbound_flood 120
fi

if wanted reconnect; then
    say "running reconnect (the client through a proxy the test cuts)"
    run_world reconnect 120
fi

if wanted mp_reconnect; then
    say "running mp_reconnect (SceneMultiplayer over a link the test cuts)"
    run_world mp_reconnect 120
fi

if wanted mp_features; then
    say "running mp_features (relay off, interest, refusal, close, kick)"
    run_world mp_features 120
fi

if wanted mp_bad_input; then
    say "running mp_bad_input (garbage into SceneMultiplayer's path)"
    run_world mp_bad_input 120
fi

if wanted mp_relay; then
    say "running mp_relay (relay cost for M = 5, 10, 20 clients)"
    for m in 5 10 20; do
        run_godot 120 "$T/mp_relay_$m.log" -s res://tests/test_mp_relay.gd -- --key-dir="$T/keys" \
            --key-name=test_cluster --master-port="$W_MASTER_PORT" --cluster-port="$W_CLUSTER_PORT" --clients="$m"
        verdict "mp_relay M=$m" "$T/mp_relay_$m.log" $?
        grep -h '^RELAY' "$T/mp_relay_$m.log" | sed 's/^/godot-tests: /'
    done
fi

if wanted flood; then
    say "running flood"
    run_world flood 120
    grep -h '^FLOOD_RESULT' "$T/flood.log" | sed 's/^/godot-tests: /'
fi

if wanted flood_remote; then
    say "running flood_remote (the flooding cluster in a second Godot process)"
    start_bg "$T/flood_cluster.log" timeout -k 5 100 "$GODOT" --headless --path "$PROJECT" \
        -s res://tests/flood_cluster_node.gd -- --master-port="$MASTER_PORT" \
        --key-path="$T/keys/flood_cluster" --key-name=flood_cluster --port="$FL_PORT" --name=flood_cluster
    FL_PID=$BG_PID
    wait_for_line "$T/flood_cluster.log" '^CLUSTER_READY' 40 "$FL_PID" || say "the flood cluster did not report CLUSTER_READY"
    run_godot 100 "$T/flood_remote.log" -s res://tests/test_flood.gd -- --remote \
        --master-port="$MASTER_PORT" --master-key="$PUB" --cluster-name=flood_cluster
    rc=$?
    wait "$FL_PID"; fl_rc=$?
    verdict "flood_remote (client process)" "$T/flood_remote.log" "$rc"
    verdict "flood_remote (cluster process)" "$T/flood_cluster.log" "$fl_rc"
    grep -h '^FLOOD_RESULT' "$T/flood_remote.log" | sed 's/^/godot-tests: /'
fi

if wanted export; then
    say "running export: headless export of the demo cluster"
    E="$T/export"; mkdir -p "$E"
    run_godot 300 "$T/export_build.log" --export-release "Linux Cluster (headless)" "$E/cluster.x86_64"
    rc=$?
    elog="$T/export.log"
    : >"$elog"
    {
        echo "== godot --export-release (exit $rc)"; cat "$T/export_build.log"
        ls -la "$E"
    } >>"$elog"
    if [ "$rc" -eq 0 ] && [ -x "$E/cluster.x86_64" ] && [ -e "$E/cluster.pck" ] && [ -e "$E/libsustenet.so" ]; then
        cp "$T/keys/export_cluster" "$E/export_cluster"
        start_bg "$T/export_run.log" timeout -k 5 120 scripts/godot-run-export.sh "$E/cluster.x86_64" -- \
            --master-port="$MASTER_PORT" --key-name=export_cluster --key-path="$E/export_cluster" \
            --port="$EXPORT_PORT" --name=exported_cluster --stop-file="$E/stop"
        EX_PID=$BG_PID
        if wait_for_line "$T/export_run.log" 'cluster id=[0-9]+' 40 "$EX_PID"; then
            CID=$(grep -oE 'cluster id=[0-9]+' "$T/export_run.log" | head -1 | cut -d= -f2)
            echo "== sustenet probe --cluster $CID" >>"$elog"
            timeout -k 5 60 "$SUSTENET" probe --master "127.0.0.1:$MASTER_PORT" --key "$PUB" \
                --cluster "$CID" --count 20 --timeout 10 --user export_probe >>"$elog" 2>&1
            rc=$?
            sleep 0.5
            grep -q 'export_probe joined' "$T/export_run.log" || { echo "== the cluster did not log the player" >>"$elog"; rc=1; }
            # Then two GDScript clients play the demo's game against the exported cluster.
            run_godot 90 "$T/demo_cluster.log" -s res://tests/test_demo_cluster.gd -- \
                --master-port="$MASTER_PORT" --master-key="$PUB" --cluster-id="$CID"
            verdict "export: demo game against the exported cluster" "$T/demo_cluster.log" $?
        else
            echo "== the exported cluster did not register with the master" >>"$elog"
            rc=1
        fi
        # The exported game must stop cleanly: ask it to (its --stop-file) and check its exit code.
        touch "$E/stop"
        for _ in $(seq 100); do kill -0 "$EX_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$EX_PID" 2>/dev/null; then
            echo "FAIL: the exported cluster did not stop within 10 s of its stop file" >>"$elog"
            kill -TERM -- "-$EX_PID" 2>/dev/null
        fi
        wait "$EX_PID"; ex_rc=$?
        echo "== exported cluster exit code: $ex_rc" >>"$elog"
        [ "$ex_rc" -eq 0 ] || { echo "FAIL: the exported cluster exited $ex_rc" >>"$elog"; rc=1; }
        { echo "== exported cluster output"; cat "$T/export_run.log"; } >>"$elog"
    else
        echo "== export failed or files missing" >>"$elog"
        [ "$rc" -eq 0 ] && rc=1
    fi
    verdict export "$elog" "$rc"
fi

if wanted portal; then
    say "running portal (the demo world's portal: a party into a dungeon instance an agent starts from the export)"
    run_portal_test
fi

if wanted border; then
    say "running border (west and east clusters in two Godot processes, a client walking across)"
    B="$T/border"; mkdir -p "$B"
    border_pids=()
    for side in west east; do
        port=$WEST_PORT; [ "$side" = east ] && port=$EAST_PORT
        # The clusters find each other by name through the master (cluster.gd), so they need
        # the master's public key.
        start_bg "$T/border_$side.log" timeout -k 5 60 "$GODOT" --headless --path "$PROJECT" \
            -s res://tests/border_cluster_node.gd -- --side="$side" --master-port="$MASTER_PORT" \
            --master-key="$PUB" --key-name="${side}_cluster" --key-path="$T/keys/${side}_cluster" \
            --bind=127.0.0.1 --port="$port" --report-dir="$B"
        border_pids+=("$BG_PID")
    done
    wait_for_line "$T/border_west.log" '^BORDER_READY' 40 "${border_pids[0]}" || say "the west cluster did not report BORDER_READY"
    wait_for_line "$T/border_east.log" '^BORDER_READY' 40 "${border_pids[1]}" || say "the east cluster did not report BORDER_READY"
    run_godot 50 "$T/border.log" -s res://tests/test_border.gd -- \
        --master-port="$MASTER_PORT" --master-key="$PUB" --report-dir="$B"
    rc=$?
    wait "${border_pids[0]}"; w_rc=$?
    wait "${border_pids[1]}"; e_rc=$?
    verdict "border (client process)" "$T/border.log" "$rc"
    verdict "border (west cluster process)" "$T/border_west.log" "$w_rc"
    verdict "border (east cluster process)" "$T/border_east.log" "$e_rc"
    grep -h '^border: walked' "$T/border.log" | sed 's/^/godot-tests: /'
fi

if wanted web_client; then
    say "running web_client (SustenetWebClient over wss against sustenet up)"
    read -r UP_PORT UP_WS_PORT <<<"$(free_ports 2)"
    U="$T/web_up"; mkdir -p "$U"
    ( cd "$U" && exec setsid "$SUSTENET" up --port "$UP_PORT" --websocket-port "$UP_WS_PORT" ) >"$T/web_up.log" 2>&1 &
    UP_PID=$!; bg_pids+=("$UP_PID")
    if wait_for_line "$T/web_up.log" '^Sustenet is up' 30 "$UP_PID"; then
        run_godot 120 "$T/web_client.log" -s res://tests/test_web_client.gd -- \
            --websocket-url="wss://127.0.0.1:$UP_WS_PORT" --cert="$U/.sustenet/websocket.crt" \
            --master-port="$UP_PORT" --master-key="$(sed -n 's/^public_key = "\(.*\)"/\1/p' "$U/.sustenet/client.toml")"
        rc=$?
    else
        say "sustenet up did not start"; rc=1
    fi
    kill -TERM "$UP_PID" 2>/dev/null; wait "$UP_PID"; up_rc=$?
    verdict web_client "$T/web_client.log" "$rc"
    # SIGTERM is a clean stop for up: it exits 0.
    verdict "web_client (sustenet up)" "$T/web_up.log" "$up_rc"
fi

if wanted web_mp; then
    say "running web_mp (SustenetWebMultiplayerPeer beside SustenetMultiplayerPeer; ws:// on loopback)"
    read -r WM_PORT WM_WS_PORT WC_PORT WC_WS_PORT WCB_PORT WCB_WS_PORT <<<"$(free_ports 6)"
    for k in web_mp web_mp_b; do
        "$SUSTENET" keygen --dir "$T/keys" --name "$k" >>"$T/keygen.log" 2>&1 || die "sustenet keygen failed"
    done
    cat >"$T/web_mp_master.toml" <<TOML
[all]
server_name = "Web multiplayer test master"
port = $WM_PORT
bind = "127.0.0.1"
key_dir = "$T/keys"

[master]
key_file = "$T/keys/master.key"
websocket_port = $WM_WS_PORT
TOML
    start_bg "$T/web_mp_master.log" "$SUSTENET" master --config "$T/web_mp_master.toml"
    WM_PID=$BG_PID
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$WM_WS_PORT") 2>/dev/null && break
        sleep 0.1
    done
    run_godot 90 "$T/web_mp.log" -s res://tests/test_web_mp.gd -- --master-port="$WM_PORT" \
        --master-ws-port="$WM_WS_PORT" --master-key="$PUB" --key-path="$T/keys/web_mp" --key-name=web_mp \
        --cluster-port="$WC_PORT" --cluster-ws-port="$WC_WS_PORT" --key-path-b="$T/keys/web_mp_b" \
        --key-name-b=web_mp_b --cluster-port-b="$WCB_PORT" --cluster-ws-port-b="$WCB_WS_PORT"
    rc=$?
    kill -TERM "$WM_PID" 2>/dev/null; wait "$WM_PID"; wm_rc=$?
    verdict web_mp "$T/web_mp.log" "$rc"
    # SIGTERM is a clean stop for the master: it exits 0.
    verdict "web_mp (sustenet master)" "$T/web_mp_master.log" "$wm_rc"
fi

# run_mp <enet|sustenet>: the equivalence game's server and two clients as three Godot
# processes; verdicts for each; the OUTCOME lines go to $T/mp_<net>.outcome (sorted).
run_mp() {
    local net=$1 common pids=() i rc
    if [ "$net" = enet ]; then
        common=(--net=enet --port="$MP_ENET_PORT")
    else
        common=(--net=sustenet --port="$MP_PORT" --master-port="$MASTER_PORT" --master-key="$PUB"
            --key-path="$T/keys/mp_cluster" --key-name=mp_cluster --cluster-name=mp_cluster)
    fi
    start_bg "$T/mp_${net}_server.log" timeout -k 5 90 "$GODOT" --headless --path "$PROJECT" \
        -s res://tests/test_mp.gd -- --role=server "${common[@]}"
    local server_pid=$BG_PID
    wait_for_line "$T/mp_${net}_server.log" '^MP_SERVER_READY' 40 "$server_pid" || say "the $net server did not report MP_SERVER_READY"
    for i in 0 1; do
        start_bg "$T/mp_${net}_client$i.log" timeout -k 5 90 "$GODOT" --headless --path "$PROJECT" \
            -s res://tests/test_mp.gd -- --role=client --index="$i" "${common[@]}"
        pids+=("$BG_PID")
    done
    for i in 0 1; do
        wait "${pids[$i]}"; rc=$?
        verdict "mp $net (client $i)" "$T/mp_${net}_client$i.log" "$rc"
    done
    wait "$server_pid"; rc=$?
    verdict "mp $net (server)" "$T/mp_${net}_server.log" "$rc"
    grep -h '^OUTCOME' "$T/mp_${net}_server.log" "$T/mp_${net}_client0.log" "$T/mp_${net}_client1.log" \
        | sort >"$T/mp_${net}.outcome"
}

if wanted mp; then
    say "running mp: the same game over ENet, then over Sustenet (3 Godot processes each)"
    run_mp enet
    run_mp sustenet
    {
        echo "== ENet outcome"; cat "$T/mp_enet.outcome"
        echo "== Sustenet outcome"; cat "$T/mp_sustenet.outcome"
    } >"$T/mp_compare.log"
    if [ "$(wc -l <"$T/mp_enet.outcome")" -eq 3 ] && cmp -s "$T/mp_enet.outcome" "$T/mp_sustenet.outcome"; then
        echo "PASS: the same OUTCOME lines over ENet and over Sustenet" >>"$T/mp_compare.log"
        verdict "mp: ENet and Sustenet outcomes are the same" "$T/mp_compare.log" 0
    else
        echo "FAIL: the OUTCOME lines differ (or are missing)" >>"$T/mp_compare.log"
        verdict "mp: ENet and Sustenet outcomes are the same" "$T/mp_compare.log" 1
    fi
fi

if wanted mp_handoff; then
    say "running mp_handoff (clusters a and b and a client in three Godot processes)"
    H="$T/mp_handoff"; mkdir -p "$H"
    hcommon=(--master-port="$MASTER_PORT" --report-dir="$H")
    start_bg "$T/mp_handoff_b.log" timeout -k 5 90 "$GODOT" --headless --path "$PROJECT" \
        -s res://tests/test_mp_handoff_cluster.gd -- --side=b --port="$MP_B_PORT" \
        --key-name=mp_b --key-path="$T/keys/mp_b" "${hcommon[@]}"
    HB_PID=$BG_PID
    wait_for_line "$T/mp_handoff_b.log" '^MP_SERVER_READY' 40 "$HB_PID" || say "cluster b did not report MP_SERVER_READY"
    B_ID=$(grep -oE '^MP_SERVER_READY id=[0-9]+' "$T/mp_handoff_b.log" | head -1 | cut -d= -f2)
    start_bg "$T/mp_handoff_a.log" timeout -k 5 90 "$GODOT" --headless --path "$PROJECT" \
        -s res://tests/test_mp_handoff_cluster.gd -- --side=a --port="$MP_A_PORT" \
        --key-name=mp_a --key-path="$T/keys/mp_a" --target-cluster="${B_ID:-0}" "${hcommon[@]}"
    HA_PID=$BG_PID
    wait_for_line "$T/mp_handoff_a.log" '^MP_SERVER_READY' 40 "$HA_PID" || say "cluster a did not report MP_SERVER_READY"
    run_godot 90 "$T/mp_handoff.log" -s res://tests/test_mp_handoff.gd -- \
        --master-key="$PUB" "${hcommon[@]}"
    rc=$?
    wait "$HA_PID"; a_rc=$?
    wait "$HB_PID"; b_rc=$?
    verdict "mp_handoff (client)" "$T/mp_handoff.log" "$rc"
    verdict "mp_handoff (cluster a)" "$T/mp_handoff_a.log" "$a_rc"
    verdict "mp_handoff (cluster b)" "$T/mp_handoff_b.log" "$b_rc"
    grep -h '^mp_handoff: [0-9]' "$T/mp_handoff.log" | sed 's/^/godot-tests: /'
fi

if wanted godot_way; then
    say "running godot_way (the Godot-way demo: two clusters and a client walking across)"
    {
        echo "== game scripts must not mention Sustenet"
        if grep -il sustenet "$PROJECT/godot_way/world.gd" "$PROJECT/godot_way/player.gd" "$PROJECT/godot_way/world.tscn" "$PROJECT/godot_way/player.tscn"; then
            echo "FAIL: a game script mentions Sustenet"
        else
            echo "PASS: world.gd, player.gd and their scenes are plain Godot"
        fi
    } >"$T/godot_way_grep.log"
    verdict "godot_way: the game code is plain Godot" "$T/godot_way_grep.log" 0
    gcommon=(--server --master-port="$MASTER_PORT" --quit-when-empty --border-x=0)
    start_bg "$T/godot_way_east.log" timeout -k 5 90 "$GODOT" --headless --path "$PROJECT" \
        res://godot_way/main.tscn -- "${gcommon[@]}" --side=east --name=gw_east --port="$GW_EAST_PORT" \
        --key-name=gw_east --key-path="$T/keys/gw_east"
    GE_PID=$BG_PID
    wait_for_line "$T/godot_way_east.log" '^GODOT_WAY_READY' 40 "$GE_PID" || say "the east cluster did not report GODOT_WAY_READY"
    GE_ID=$(grep -oE '^GODOT_WAY_READY id=[0-9]+' "$T/godot_way_east.log" | head -1 | cut -d= -f2)
    start_bg "$T/godot_way_west.log" timeout -k 5 90 "$GODOT" --headless --path "$PROJECT" \
        res://godot_way/main.tscn -- "${gcommon[@]}" --side=west --name=gw_west --port="$GW_WEST_PORT" \
        --key-name=gw_west --key-path="$T/keys/gw_west" --neighbour-id="${GE_ID:-0}"
    GW_PID=$BG_PID
    wait_for_line "$T/godot_way_west.log" '^GODOT_WAY_READY' 40 "$GW_PID" || say "the west cluster did not report GODOT_WAY_READY"
    run_godot 90 "$T/godot_way.log" -s res://tests/test_godot_way.gd -- \
        --master-port="$MASTER_PORT" --master-key="$PUB" --cluster-name=gw_west --username=walker
    rc=$?
    wait "$GW_PID"; w_rc=$?
    wait "$GE_PID"; e_rc=$?
    verdict "godot_way (client)" "$T/godot_way.log" "$rc"
    verdict "godot_way (west cluster)" "$T/godot_way_west.log" "$w_rc"
    verdict "godot_way (east cluster)" "$T/godot_way_east.log" "$e_rc"
fi

if wanted export_godot_way; then
    say "running export_godot_way: the headless cluster export as the Godot-way demo's two clusters"
    E="$T/export_gw"; mkdir -p "$E"
    run_godot 300 "$T/export_gw_build.log" --export-release "Linux Cluster (headless)" "$E/cluster.x86_64"
    rc=$?
    if [ "$rc" -eq 0 ] && [ -x "$E/cluster.x86_64" ] && [ -e "$E/libsustenet.so" ]; then
        cp "$T/keys/gwx_west" "$T/keys/gwx_east" "$E/"
        xcommon=(--master-port="$MASTER_PORT" --quit-when-empty --border-x=0)
        start_bg "$T/export_gw_east.log" timeout -k 5 90 scripts/godot-run-export.sh "$E/cluster.x86_64" \
            -- --godot-way "${xcommon[@]}" --side=east --name=gwx_east --port="$GWX_EAST_PORT" \
            --key-name=gwx_east --key-path="$E/gwx_east"
        XE_PID=$BG_PID
        wait_for_line "$T/export_gw_east.log" '^GODOT_WAY_READY' 40 "$XE_PID" || say "the exported east cluster did not report GODOT_WAY_READY"
        XE_ID=$(grep -oE '^GODOT_WAY_READY id=[0-9]+' "$T/export_gw_east.log" | head -1 | cut -d= -f2)
        start_bg "$T/export_gw_west.log" timeout -k 5 90 scripts/godot-run-export.sh "$E/cluster.x86_64" \
            -- --godot-way "${xcommon[@]}" --side=west --name=gwx_west --port="$GWX_WEST_PORT" \
            --key-name=gwx_west --key-path="$E/gwx_west" --neighbour-id="${XE_ID:-0}"
        XW_PID=$BG_PID
        wait_for_line "$T/export_gw_west.log" '^GODOT_WAY_READY' 40 "$XW_PID" || say "the exported west cluster did not report GODOT_WAY_READY"
        run_godot 90 "$T/export_gw_client.log" -s res://tests/test_godot_way.gd -- \
            --master-port="$MASTER_PORT" --master-key="$PUB" --cluster-name=gwx_west --username=export_walker
        rc=$?
        wait "$XW_PID"; w_rc=$?
        wait "$XE_PID"; e_rc=$?
        verdict "export_godot_way (client)" "$T/export_gw_client.log" "$rc"
        verdict "export_godot_way (exported west cluster)" "$T/export_gw_west.log" "$w_rc"
        verdict "export_godot_way (exported east cluster)" "$T/export_gw_east.log" "$e_rc"
    else
        { echo "== export failed or files missing (exit $rc)"; cat "$T/export_gw_build.log"; ls -la "$E"; } >"$T/export_gw.log"
        verdict "export_godot_way (export)" "$T/export_gw.log" 1
    fi
fi

if wanted mp_bench; then
    say "running mp_bench (MultiplayerSynchronizer throughput, ENet vs Sustenet)"
    for bn in 100 500; do
        for net in enet sustenet; do
            if [ "$net" = enet ]; then
                bcommon=(--net=enet --port="$MP_BENCH_PORT" --n="$bn")
            else
                bcommon=(--net=sustenet --port="$MP_BENCH_PORT" --n="$bn" --master-port="$MASTER_PORT"
                    --master-key="$PUB" --key-path="$T/keys/mp_bench" --key-name=mp_bench
                    --cluster-name="mp_bench_$bn")
            fi
            blog="$T/mp_bench_${net}_$bn"
            start_bg "${blog}_server.log" timeout -k 5 130 "$GODOT" --headless --path "$PROJECT" \
                -s res://tests/test_mp_bench.gd -- --role=server "${bcommon[@]}"
            BS_PID=$BG_PID
            wait_for_line "${blog}_server.log" '^MP_SERVER_READY' 40 "$BS_PID" || say "the bench server did not start"
            run_godot 130 "${blog}_client.log" -s res://tests/test_mp_bench.gd -- --role=client "${bcommon[@]}"
            rc=$?
            wait "$BS_PID"; bs_rc=$?
            verdict "mp_bench $net n=$bn (client)" "${blog}_client.log" "$rc"
            verdict "mp_bench $net n=$bn (server)" "${blog}_server.log" "$bs_rc"
            grep -h '^BENCH_' "${blog}_client.log" "${blog}_server.log" | sed 's/^/godot-tests: /'
        done
    done
fi

if wanted agones; then
    say "running agones (SustenetCluster.agones_enabled against the recording SDK server)"
    run_agones_test
fi

say "master log: $(grep -c . "$T/master.log") lines; it ran the whole time: $(kill -0 "$MASTER_PID" 2>/dev/null && echo yes || echo no)"
kill -0 "$MASTER_PID" 2>/dev/null || { failed=$((failed + 1)); failed_names+=("master died"); cat "$T/master.log"; }
say "took $(( $(date +%s) - START )) s"
[ "$failed" -gt 0 ] && say "failed: ${failed_names[*]}"
echo "godot: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
