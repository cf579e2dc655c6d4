# The in-engine `agones` test of scripts/godot-tests.sh (sourced there; uses its T, REPO,
# GODOT, SUSTENET, MASTER_PORT, PUB, no_build and its helpers say, start_bg, free_ports,
# wait_for_line, run_godot, verdict).
#
# First, with demo_project's default addon (no `agones` feature), tests/test_agones.gd
# --expect-unavailable: start() with agones_enabled returns ERR_UNAVAILABLE.
#
# SustenetCluster with agones_enabled, from the addon built with the cargo feature `agones`
# (cargo build -p sustenet-godot --features agones: the default addon build stays without
# it), in a headless Godot running tests/test_agones.gd in a small project of its own (the
# addon with that library, test_base.gd with the error_log.gd it loads, and the test). The SDK sidecar is the recording SDK
# server of rust/server/tests/agones.rs run as a process
# (rust/server/examples/agones_sdk_recorder.rs); Godot gets its port through
# AGONES_SDK_GRPC_PORT, as a GameServer pod does. The master is the real `sustenet master`
# of godot-tests.sh. After Godot exits, the recorder's calls (health pings aside) must be
# exactly SetPlayerCapacity(4) Ready PlayerConnect(id) Allocate PlayerDisconnect(id) Ready
# Shutdown, with health pings after Ready, and Godot's exit code 0.

# agones_check <log> <ok> <what>: appends a PASS or FAIL line for verdict.
agones_check() {
    if [ "$2" -eq 1 ]; then echo "PASS: agones: $3" >>"$1"; else echo "FAIL: agones: $3" >>"$1"; fi
}

run_agones_test() {
    local A="$T/agones" target="${CARGO_TARGET_DIR:-$REPO/target}" lib recorder game_port sdk_port rc
    local log="$A/agones.log" pid seq want ok
    mkdir -p "$A/project/addons" "$A/project/tests"
    # The default addon (demo_project's, built without the feature) refuses agones_enabled.
    run_godot 60 "$A/unavailable.log" -s res://tests/test_agones.gd -- --expect-unavailable
    verdict "agones (default addon: ERR_UNAVAILABLE)" "$A/unavailable.log" $?
    if [ "$no_build" -eq 0 ]; then
        say "agones: cargo build -p sustenet-godot --features agones, and the SDK recorder"
        cargo build -p sustenet-godot --features agones >"$A/build.log" 2>&1 &&
            cargo build -p sustenet-server --features agones --example agones_sdk_recorder >>"$A/build.log" 2>&1 ||
            { echo "FAIL: agones: the builds failed (see $A/build.log)" >"$log"; tail -30 "$A/build.log" >>"$log"; verdict agones "$log" 1; return; }
    fi
    lib="$target/debug/libsustenet.so"
    recorder="$target/debug/examples/agones_sdk_recorder"
    # Only the featured library links the Agones SDK client (its gRPC method paths).
    if ! grep -q 'agones.dev.sdk.SDK/Ready' "$lib" 2>/dev/null || [ ! -x "$recorder" ]; then
        echo "FAIL: agones: $lib is not built with the agones feature or $recorder is missing (run without --no-build)" >"$log"
        verdict agones "$log" 1
        return
    fi
    cp -r "$REPO/addons/sustenet" "$A/project/addons/"
    cp -f "$lib" "$A/project/addons/sustenet/bin/libsustenet.debug.so"
    cp "$REPO/demo_project/tests/test_base.gd" "$REPO/demo_project/tests/error_log.gd" \
        "$REPO/demo_project/tests/test_agones.gd" "$A/project/tests/"
    printf 'config_version=5\n\n[application]\nconfig/name="Agones"\n' >"$A/project/project.godot"
    timeout -k 5 180 "$GODOT" --headless --path "$A/project" --import >"$A/import.log" 2>&1
    "$SUSTENET" keygen --dir "$T/keys" --name agones_cluster >>"$A/keygen.log" 2>&1
    read -r game_port <<<"$(free_ports 1)"
    start_bg "$A/recorder.log" "$recorder" "$game_port"
    local recorder_pid=$BG_PID
    wait_for_line "$A/recorder.log" '^PORT [0-9]+$' 20 "$recorder_pid" || {
        echo "FAIL: agones: the SDK recorder did not start" >"$log"; cat "$A/recorder.log" >>"$log"
        verdict agones "$log" 1; return; }
    sdk_port=$(sed -n 's/^PORT //p' "$A/recorder.log")
    AGONES_SDK_GRPC_PORT=$sdk_port timeout -k 5 90 "$GODOT" --headless --path "$A/project" \
        -s res://tests/test_agones.gd -- --master-port="$MASTER_PORT" --master-key="$PUB" \
        --key-path="$T/keys/agones_cluster" --key-name=agones_cluster --port="$game_port" \
        --calls-file="$A/recorder.log" >"$log" 2>&1
    rc=$?
    kill -TERM "$recorder_pid" 2>/dev/null; wait "$recorder_pid" 2>/dev/null
    pid=$(sed -n 's/^AGONES_PLAYER //p' "$log")
    seq=$(sed -n 's/^CALL //p' "$A/recorder.log" | grep -vx Health | tr '\n' ' ')
    want="SetPlayerCapacity(4) Ready PlayerConnect($pid) Allocate PlayerDisconnect($pid) Ready Shutdown "
    ok=0; [ -n "$pid" ] && [ "$seq" = "$want" ] && ok=1
    agones_check "$log" "$ok" "the SDK calls in order: '$seq' (want '$want')"
    ok=0; sed -n 's/^CALL //p' "$A/recorder.log" | sed -n '/^Ready$/,/^Shutdown$/p' | grep -qx Health && ok=1
    agones_check "$log" "$ok" "health pings between Ready and Shutdown"
    ok=0; [ "$(sed -n 's/^CALL //p' "$A/recorder.log" | tail -1)" = Shutdown ] && ok=1
    agones_check "$log" "$ok" "Shutdown is the last call (sent when the game quit)"
    verdict agones "$log" "$rc"
}
