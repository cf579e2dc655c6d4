## Cluster side of test_client_cluster.gd, run as a SECOND headless Godot process:
##   godot --headless --path demo_project -s res://tests/test_cluster_node.gd -- \
##     --master-port=P --key-path=FILE --key-name=NAME --port=P2 --name=test_cluster
## A SustenetCluster registers with the master (a real `sustenet master`), waits for the
## test client, checks what it receives (player id, command, bytes, channel), echoes, then
## kicks the player when asked and checks the disconnect; then stop() and start() at once on
## the same ports, five times. Exit 0 only if all checks passed.
extends "res://tests/test_base.gd"

const KICK_MESSAGE := "test kick message"
const PATTERN_LEN := 1000

var cluster: SustenetCluster
var started_ports := []
var cluster_id := 0
var player_id := 0
var player_data := PackedByteArray()
var got_reliable := false
var got_unreliable := false
var got_empty := false
var kicked := false
var left_reason := -1
var left_id := 0


static func pattern(pid: int, n: int) -> PackedByteArray:
	var b := PackedByteArray()
	b.resize(8 + n)
	b.encode_s64(0, pid)
	for i in n:
		b[8 + i] = (i * 7 + 3) % 256
	return b


func _initialize() -> void:
	begin("cluster_node", 60)
	cluster = SustenetCluster.new()
	cluster.server_name = arg("name", "test_cluster")
	cluster.port = arg("port", 0)
	cluster.master_port = arg("master-port", 6256)
	cluster.key_name = arg("key-name", "test_cluster")
	cluster.key_path = arg("key-path", "")
	cluster.public_address = "127.0.0.1"
	cluster.started.connect(func(t, u): started_ports = [t, u])
	cluster.registered.connect(func(id): cluster_id = id)
	cluster.master_lost.connect(func(m): print("cluster_node: master_lost: ", m))
	cluster.player_connected.connect(_on_player_connected)
	cluster.player_disconnected.connect(func(id, reason): left_id = id; left_reason = reason)
	cluster.packet_received.connect(_on_packet)
	root.add_child(cluster)
	_run()


func _run() -> void:
	var err := cluster.start()
	if not check(err == OK, "start() returned OK (got %s)" % error_string(err)):
		await finish()
		return
	check(cluster.is_running(), "is_running() after start()")
	await wait_until(func(): return not started_ports.is_empty(), 5)
	check(started_ports.size() == 2 and started_ports[0] == cluster.get_bound_tcp_port() \
			and started_ports[1] == cluster.get_bound_udp_port() and started_ports[0] > 0,
			"started(tcp, udp) matches get_bound_tcp_port()/get_bound_udp_port(): %s" % [started_ports])
	if not check(await wait_until(func(): return cluster_id != 0, 10), "registered with the master"):
		await finish()
		return
	check(cluster.get_cluster_id() == cluster_id, "get_cluster_id() == registered id (%d)" % cluster_id)
	# The harness waits for this line before it starts the client.
	print("CLUSTER_READY id=%d tcp=%d udp=%d" % [cluster_id, cluster.get_bound_tcp_port(), cluster.get_bound_udp_port()])
	if not check(await wait_until(func(): return player_id != 0, 30), "a player connected"):
		await finish()
		return
	check(player_data.get_string_from_utf8() == "tester",
			"player_connected data is the login name 'tester' (got '%s')" % player_data.get_string_from_utf8())
	check(cluster.get_player_count() == 1, "get_player_count() == 1 (got %d)" % cluster.get_player_count())
	check(player_id in cluster.get_players(), "get_players() holds the player")
	if not check(await wait_until(func(): return left_reason >= 0, 30), "player_disconnected fired"):
		await finish()
		return
	check(got_reliable and got_unreliable and got_empty, "received the reliable, unreliable and empty packets")
	check(kicked, "kick() was called")
	check(left_id == player_id, "player_disconnected id == player id")
	check(left_reason == SustenetClient.REASON_KICKED,
			"player_disconnected reason == REASON_KICKED (got %d: %s)" % [left_reason, SustenetClient.reason_text(left_reason)])
	await wait_until(func(): return cluster.get_player_count() == 0, 5)
	check(cluster.get_player_count() == 0, "get_player_count() == 0 after the kick")
	var ports := [cluster.get_bound_tcp_port(), cluster.get_bound_udp_port()]
	check(cluster.stop() == OK, "stop() returned OK")
	check(not cluster.is_running(), "not is_running() after stop()")
	# stop() then start() at once, on the same ports: start() waits for the last run to let
	# them go (it says goodbye to its players first) instead of finding them in use.
	var restarts := 0
	for i in 5:
		var again := cluster.start()
		if again != OK:
			check(false, "start() right after stop() #%d: %s" % [i + 1, error_string(again)])
			break
		if [cluster.get_bound_tcp_port(), cluster.get_bound_udp_port()] == ports:
			restarts += 1
		cluster.stop()
	check(restarts == 5, "start() right after stop() binds the same ports again, 5 times out of 5")
	await finish()


func _on_player_connected(id: int, data: PackedByteArray) -> void:
	print("cluster_node: player_connected ", id)
	player_id = id
	player_data = data
	check(id > 0, "player id is positive")
	check(cluster.send_var_to(id, 100, {"player_id": id}) == OK, "send_var_to(100) OK")


func _on_packet(id: int, command: int, data: PackedByteArray, reliable: bool) -> void:
	match command:
		101:
			got_reliable = true
			check(id == player_id, "101: player id in packet_received is the connected player")
			check(reliable, "101: came reliably")
			check(data == pattern(player_id, PATTERN_LEN), "101: %d bytes as sent" % data.size())
			check(cluster.send_to(id, 102, data) == OK, "send_to(102) OK")
		103:
			if not got_unreliable:
				got_unreliable = true
				check(id == player_id, "103: player id is the connected player")
				check(not reliable, "103: came unreliably")
				check(data == pattern(player_id, 100), "103: %d bytes as sent" % data.size())
			cluster.send_unreliable_to(id, 104, data)
		105:
			check(data.is_empty(), "105: empty payload arrives empty")
			got_empty = true
			check(cluster.send_to(id, 106, PackedByteArray()) == OK, "send_to(106, empty) OK")
		107:
			kicked = true
			check(cluster.kick(id, KICK_MESSAGE) == OK, "kick() OK")
		_:
			check(false, "unexpected command %d" % command)
