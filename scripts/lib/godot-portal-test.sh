# The in-engine `portal` test of scripts/godot-tests.sh (sourced there; uses its T, REPO,
# PROJECT, GODOT, SUSTENET, MASTER_PORT, PUB, PORTAL_* ports and its helpers start_bg,
# wait_for_line, run_godot, verdict).
#
# 1. The demo cluster (cluster.tscn) runs as the world "portal_world" with its portal on and
#    --portal-stop-when-empty=2; a real `sustenet agent` offers the template "dungeon": the
#    headless export of the demo through scripts/godot-run-export.sh with --dungeon={scene}
#    --quit-on-stdin-eof, its key file in the agent's run_dir inside the export folder (the
#    folder the chroot sees).
# 2. test_portal.gd: a party walks in, is moved to the fresh instance, walks out; the empty
#    instance leaves the master's list. The agent must log the instance's exit with code 0 and
#    stopped=true (it stopped on the agent's closed pipe, not on a signal).
# 3. `sustenet instances spawn dungeon` starts a second instance; the agent is killed with -9;
#    the instance must exit by itself (its standard input, the agent's pipe, closed).
# 4. The world stops through its stop file (exit 0); no process of the export is left.
# 5. `sustenet up --dungeon-export` (run in the export's folder, so the instance's key file is
#    where the chroot sees it, with scripts/godot-run-export.sh as --dungeon-runner): up's own
#    agent offers the template; `sustenet instances spawn dungeon` reaches ready, `instances
#    stop` ends it (exit 0, stopped=true), up exits 0 on SIGTERM, no export process is left.

# portal_export_procs: pids of processes running the portal test's export (wrapper included).
portal_export_procs() { pgrep -f -- "$T/portal/cluster.x86_64" || true; }

# portal_wait_exit <log> <instance id> <seconds>: 0 once the agent logged that instance's
# process exiting with code 0 on the agent's request (stopped=true).
portal_wait_exit() {
    for _ in $(seq $(( $3 * 5 ))); do
        sed 's/\x1b\[[0-9;]*m//g' "$1" \
            | grep -qE "instance process exited instance_id=$2 code=0 stopped=true" && return 0
        sleep 0.2
    done
    return 1
}

# portal_start_agent <log>: starts the agent (sets AGENT_PID); 0 once it registered.
portal_start_agent() {
    RUST_LOG="info,sustenet_server::agent=debug" start_bg "$1" "$SUSTENET" agent -c "$T/portal/agent.toml"
    AGENT_PID=$BG_PID
    wait_for_line "$1" 'agent registered' 30 "$AGENT_PID"
}

run_portal_test() {
    local P="$T/portal" plog="$T/portal_checks.log" rc=0 world_rc agent_rc
    mkdir -p "$P/run"
    : >"$plog"
    run_godot 300 "$T/portal_build.log" --export-release "Linux Cluster (headless)" "$P/cluster.x86_64"
    if [ $? -ne 0 ] || [ ! -x "$P/cluster.x86_64" ] || [ ! -e "$P/libsustenet.so" ]; then
        { echo "FAIL: the export failed"; cat "$T/portal_build.log"; ls -la "$P"; } >>"$plog"
        verdict "portal (export)" "$plog" 1
        return
    fi
    cat >"$P/agent.toml" <<TOML
[all]
key_dir = "$T/keys"

[agent]
name = "portal_agent"
key_name = "portal_agent"
master = "127.0.0.1:$MASTER_PORT"
capacity = 4
port_first = $PORTAL_FIRST_PORT
port_last = $((PORTAL_FIRST_PORT + 9))
public_address = "127.0.0.1"
run_dir = "$P/run"
stop_grace_ms = 10000
stderr_lines = 200

[agent.templates.dungeon]
command = "$REPO/scripts/godot-run-export.sh"
args = ["$P/cluster.x86_64", "--", "--dungeon={scene}", "--key-name={key_name}", "--key-path={key_path}", "--port={port}", "--bind=127.0.0.1",
        "--public-address={public_address}", "--master-port=$MASTER_PORT", "--quit-on-stdin-eof"]
max = 2
TOML
    if ! portal_start_agent "$T/portal_agent.log"; then
        echo "FAIL: the agent did not register" >>"$plog"
        verdict "portal (agent)" "$T/portal_agent.log" 1
        return
    fi
    start_bg "$T/portal_world.log" timeout -k 5 150 "$GODOT" --headless --path "$PROJECT" \
        res://cluster/cluster.tscn -- --name=portal_world --key-name=portal_world \
        --key-path="$T/keys/portal_world" --port="$PORTAL_WORLD_PORT" --bind=127.0.0.1 \
        --master-port="$MASTER_PORT" --portal-stop-when-empty=2 --stop-file="$P/stop_world"
    local world_pid=$BG_PID
    wait_for_line "$T/portal_world.log" 'cluster id=[0-9]+' 40 "$world_pid" || echo "FAIL: the world did not register" >>"$plog"

    run_godot 120 "$T/portal.log" -s res://tests/test_portal.gd -- \
        --master-port="$MASTER_PORT" --master-key="$PUB" --cluster-name=portal_world
    verdict "portal (players)" "$T/portal.log" $?

    # The stopped instance: the agent's report of its exit.
    if portal_wait_exit "$T/portal_agent.log" 1 20; then
        echo "PASS: the agent stopped the empty dungeon; its process exited 0" >>"$plog"
    else
        echo "FAIL: no 'instance process exited ... code=0 stopped=true' in the agent's log" >>"$plog"
    fi

    # kill -9 of the agent: its running instance must not survive it.
    timeout -k 5 90 "$SUSTENET" instances --master "127.0.0.1:$MASTER_PORT" --key-dir "$T/keys" \
        spawn dungeon --param scene=cave >"$T/portal_spawn.log" 2>&1
    if [ $? -eq 0 ] && [ -n "$(portal_export_procs)" ]; then
        echo "PASS: a second instance is up ($(cat "$T/portal_spawn.log"))" >>"$plog"
        kill -KILL "$AGENT_PID"
        wait "$AGENT_PID" 2>/dev/null
        for _ in $(seq 150); do [ -z "$(portal_export_procs)" ] && break; sleep 0.2; done
        if [ -z "$(portal_export_procs)" ]; then
            echo "PASS: after kill -9 of its agent, the instance's processes are gone" >>"$plog"
        else
            echo "FAIL: the instance outlived its agent's kill -9: $(portal_export_procs | tr '\n' ' ')" >>"$plog"
            portal_export_procs | xargs -r kill -KILL
        fi
        { echo "== the orphaned instance's stderr"; cat "$P"/run/*.log 2>/dev/null; } >>"$plog"
        agent_rc=0
    else
        { echo "FAIL: sustenet instances spawn failed"; cat "$T/portal_spawn.log"; } >>"$plog"
        kill -TERM "$AGENT_PID"; wait "$AGENT_PID"; agent_rc=$?
    fi

    touch "$P/stop_world"
    wait "$world_pid"; world_rc=$?
    [ -z "$(portal_export_procs)" ] || { echo "FAIL: export processes left: $(portal_export_procs | tr '\n' ' ')" >>"$plog"; rc=1; }
    { echo "== agent log"; cat "$T/portal_agent.log"; } >>"$plog"
    verdict "portal (instances: stop when empty, agent kill -9, no orphans)" "$plog" "$rc"
    portal_up_dungeon
    verdict "portal (world cluster)" "$T/portal_world.log" "$world_rc"
    [ "$agent_rc" -eq 0 ] || verdict "portal (agent exit)" "$T/portal_agent.log" "$agent_rc"
}

# portal_up_dungeon: step 5 above, with the export the portal test built.
portal_up_dungeon() {
    local P="$T/portal" ulog="$T/up_dungeon.log" clog="$T/up_dungeon_checks.log" rc=0 up_pid up_rc port
    port=$(free_ports 1)
    : >"$clog"
    ( cd "$P" && RUST_LOG="info,sustenet_server::agent=debug" exec setsid "$SUSTENET" up --clusters 1 \
        --port "$port" --no-websocket --dungeon-export "$P/cluster.x86_64" \
        --dungeon-runner "$REPO/scripts/godot-run-export.sh" ) >"$ulog" 2>&1 &
    up_pid=$!; bg_pids+=("$up_pid")
    if ! wait_for_line "$ulog" '^Sustenet is up' 40 "$up_pid"; then
        echo "FAIL: sustenet up did not start" >>"$clog"; rc=1
    elif ! grep -q 'template dungeon: ' "$ulog"; then
        echo "FAIL: up offers no dungeon template" >>"$clog"; rc=1
    else
        local inst=( "$SUSTENET" instances --master "127.0.0.1:$port" --key-dir "$P/.sustenet/keys" )
        ( cd "$P" && timeout -k 5 90 "${inst[@]}" spawn dungeon --param scene=crypt ) >"$T/up_dungeon_spawn.log" 2>&1
        if [ $? -eq 0 ] && grep -q 'ready on agent up' "$T/up_dungeon_spawn.log" && [ -n "$(portal_export_procs)" ]; then
            echo "PASS: up's agent started the dungeon export: $(cat "$T/up_dungeon_spawn.log")" >>"$clog"
            local id
            id=$(sed -n 's/^instance \([0-9]*\) ready.*/\1/p' "$T/up_dungeon_spawn.log")
            timeout -k 5 30 "${inst[@]}" stop "$id" >>"$clog" 2>&1 || { echo "FAIL: instances stop $id" >>"$clog"; rc=1; }
            if portal_wait_exit "$ulog" "$id" 30; then
                echo "PASS: instances stop $id: the export exited 0" >>"$clog"
            else
                echo "FAIL: no 'instance process exited instance_id=$id code=0 stopped=true' in up's log" >>"$clog"; rc=1
            fi
        else
            { echo "FAIL: instances spawn dungeon through up"; cat "$T/up_dungeon_spawn.log"; } >>"$clog"; rc=1
        fi
    fi
    kill -TERM "$up_pid" 2>/dev/null; wait "$up_pid"; up_rc=$?
    for _ in $(seq 50); do [ -z "$(portal_export_procs)" ] && break; sleep 0.2; done
    if [ -n "$(portal_export_procs)" ]; then
        echo "FAIL: export processes left after up: $(portal_export_procs | tr '\n' ' ')" >>"$clog"; rc=1
        portal_export_procs | xargs -r kill -KILL
    fi
    { echo "== up's log"; cat "$ulog"; } >>"$clog"
    verdict "portal (sustenet up's dungeon template: spawn, stop, no orphans)" "$clog" "$rc"
    verdict "portal (sustenet up exit)" "$ulog" "$up_rc"
}
