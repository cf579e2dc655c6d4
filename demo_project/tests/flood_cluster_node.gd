## Cluster side of `test_flood.gd --remote`: a SustenetCluster in its own Godot process that,
## on command 41 from a player, sends it `count` (u32 in the payload) reliable packets of
## command 40, 1,000 per frame. Quits after its player leaves (exit 0) or on the watchdog.
##   godot --headless --path demo_project -s res://tests/flood_cluster_node.gd -- \
##     --master-port=P --key-path=FILE --key-name=NAME --port=P2 --name=flood_cluster
extends "res://tests/test_base.gd"

var cluster: SustenetCluster
var registered_id := 0
var target := 0
var to_send := 0
var sent := 0
var errors := 0
var left := false


func _initialize() -> void:
	begin("flood_cluster", 90)
	cluster = SustenetCluster.new()
	cluster.server_name = arg("name", "flood_cluster")
	cluster.port = arg("port", 0)
	cluster.master_port = arg("master-port", 6256)
	cluster.key_name = arg("key-name", "test_cluster")
	cluster.key_path = arg("key-path", "")
	# The whole flood (10,000 by default) fits the player's send queue: on a loaded machine the
	# client's process may read later than this one sends, and past the queue (4096 messages
	# by default) the player would be dropped with REASON_SEND_QUEUE_FULL instead of drained.
	cluster.send_queue = 16384
	cluster.registered.connect(func(id): registered_id = id)
	cluster.packet_received.connect(func(pid, cmd, data, _rel):
		if cmd == 41 and data.size() == 4:
			target = pid
			to_send = data.decode_u32(0))
	cluster.player_disconnected.connect(func(_id, r):
		print("flood_cluster: player left: %d (%s)" % [r, SustenetClient.reason_text(r)])
		left = true)
	root.add_child(cluster)
	_run()


func _run() -> void:
	check(cluster.start() == OK, "start() OK")
	if check(await wait_until(func(): return registered_id != 0, 15), "registered"):
		print("CLUSTER_READY id=%d" % registered_id)
	if check(await wait_until(func(): return to_send > 0, 40), "a player asked for the flood"):
		var payloads := []
		for i in to_send:
			var b := PackedByteArray()
			b.resize(4)
			b.encode_u32(0, i)
			payloads.append(b)
		var t0 := Time.get_ticks_usec()
		while sent < to_send:
			for i in mini(1000, to_send - sent):
				if cluster.send_to(target, 40, payloads[sent]) != OK:
					errors += 1
				sent += 1
			await process_frame
		var ms := (Time.get_ticks_usec() - t0) / 1000.0
		check(errors == 0, "send_to: no errors (%d)" % errors)
		print("flood_cluster: sent %d packets in %.1f ms%s" % [sent, ms, "" if ms < 1000.0 else " (NOTE: over 1 s, a loaded machine?)"])
		check(await wait_until(func(): return left, 40), "the player left")
	cluster.stop()
	await finish()
