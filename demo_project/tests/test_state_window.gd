## SustenetCluster.state_window_ms (the cluster's state window, [cluster] state_window_ms):
##   godot --headless --path demo_project -s res://tests/test_state_window.gd -- \
##     --key-dir=DIR --key-name=test_cluster --master-port=P --cluster-port=P2
## The default is 5; 0 and 1000 pass the window check (start() goes on to the key, which is
## missing here); -1 and 1001 make start() return ERR_INVALID_PARAMETER with a message naming
## the property and its range, and the cluster does not run. Then a world (SustenetMaster +
## SustenetCluster with a 2 ms window + SustenetClient, and a second client) where both players
## stand side by side: each one's set_player_state reaches the other, unreliably, as the
## command with payload player id (8 bytes LE) + data.
extends "res://tests/test_base.gd"

const STATE_CMD := 40
const WINDOW_MS := 2


var neighbour: SustenetClient
var neighbour_pid := 0
var heard_by_world := PackedByteArray()
var heard_by_neighbour := PackedByteArray()


func _initialize() -> void:
	begin("state_window", 60)
	world_cluster_setup = func(c: SustenetCluster) -> void: c.state_window_ms = WINDOW_MS
	_run()


func _run() -> void:
	_check_bounds()
	if not await start_world():
		await stop_world()
		await finish()
		return
	check(w_cluster.state_window_ms == WINDOW_MS, "the world cluster runs with state_window_ms %d" % WINDOW_MS)
	var world_pid := world_cluster_pid  # player_connected sets it again for the neighbour
	w_client.packet_received.connect(func(cmd, data, rel):
		if cmd == STATE_CMD and not rel:
			heard_by_world = data)
	neighbour = SustenetClient.new()
	neighbour.packet_received.connect(func(cmd, data, rel):
		if cmd == STATE_CMD and not rel:
			heard_by_neighbour = data)
	neighbour_pid = await join_world(neighbour, "neighbour")
	if neighbour_pid == 0:
		await stop_world()
		await finish()
		return
	check(w_cluster.set_player_position(world_pid, Vector2(10, 10)) == OK
			and w_cluster.set_player_position(neighbour_pid, Vector2(12, 10)) == OK,
			"both players placed side by side")
	check(w_cluster.set_player_state(world_pid, STATE_CMD, PackedByteArray([1, 2, 3])) == OK
			and w_cluster.set_player_state(neighbour_pid, STATE_CMD, PackedByteArray([4, 5])) == OK,
			"set_player_state OK for both")
	# States are resent at the fragment's rate while unchanged: a lost datagram is made up.
	await wait_until(func(): return heard_by_world.size() == 10 and heard_by_neighbour.size() == 11, 10)
	check(heard_by_neighbour.size() == 11 and heard_by_neighbour.decode_s64(0) == world_pid
			and heard_by_neighbour.slice(8) == PackedByteArray([1, 2, 3]),
			"the neighbour got the world player's state: id + [1, 2, 3] (%s)" % [heard_by_neighbour])
	check(heard_by_world.size() == 10 and heard_by_world.decode_s64(0) == neighbour_pid
			and heard_by_world.slice(8) == PackedByteArray([4, 5]),
			"the world player got the neighbour's state: id + [4, 5] (%s)" % [heard_by_world])
	neighbour.disconnect_from_server()
	await stop_world()
	await finish()


## The default, and start()'s answer at and past both ends of 0..1000.
func _check_bounds() -> void:
	var errors_log := ErrorLog.new()
	OS.add_logger(errors_log)
	var c := SustenetCluster.new()
	check(c.state_window_ms == 5, "state_window_ms is 5 by default (got %d)" % c.state_window_ms)
	c.key_path = "res://tests/no_such_key_file"
	for ms in [0, 1000]:
		c.state_window_ms = ms
		var err := c.start()
		check(err == ERR_FILE_CANT_OPEN and not c.is_running(),
				"state_window_ms %d passes; start() goes on to the missing key (got %s)" % [ms, error_string(err)])
	for ms in [-1, 1001]:
		c.state_window_ms = ms
		var err := c.start()
		check(err == ERR_INVALID_PARAMETER and not c.is_running(),
				"state_window_ms %d: start() returns ERR_INVALID_PARAMETER (got %s)" % [ms, error_string(err)])
		var message := "SustenetCluster: state_window_ms %d must be between 0 and 1000" % ms
		check(errors_log.has(message), "state_window_ms %d: the error says \"%s\"" % [ms, message])
	c.free()
	OS.remove_logger(errors_log)
