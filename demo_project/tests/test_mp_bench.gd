## MultiplayerSynchronizer throughput, ENet vs Sustenet (measured, not asserted; figures in
## docs/performance.md). A server process moves N nodes every frame, each with its own
## MultiplayerSynchronizer on `position` at 20 Hz (replication_interval 0.05 s); a client
## process counts the position updates it sees over WINDOW seconds. Only the line that makes the
## peer differs between the two runs.
##   godot --headless --path demo_project -s res://tests/test_mp_bench.gd -- --role=server|client \
##     --net=enet|sustenet --n=N [--port=P] [--master-port=P --master-key=K --key-path=F \
##     --key-name=N --cluster-name=N]
## Prints `BENCH_CLIENT ...` and `BENCH_SERVER ...` lines.
extends "res://tests/test_base.gd"

const WINDOW := 5.0
const HZ := 20.0

var game: Node
var things: Node
var spawner: MultiplayerSpawner
var net := "enet"
var n := 100
var cluster_ready := false
var client_done := {}
var moving := false
var t := 0.0


func _initialize() -> void:
	begin("mp_bench", 120)
	net = arg("net", "enet")
	n = arg("n", 100)
	test_name = "mp_bench %s n=%d %s" % [net, n, arg("role", "?")]
	game = Node.new()
	game.name = "Bench"
	root.add_child(game)
	things = Node.new()
	things.name = "Things"
	game.add_child(things)
	spawner = MultiplayerSpawner.new()
	spawner.name = "Spawner"
	spawner.spawn_function = _spawn_thing
	game.add_child(spawner)
	spawner.spawn_path = spawner.get_path_to(things)
	_start.call_deferred()


func _spawn_thing(i: int) -> Node:
	var p := Node2D.new()
	p.name = "T%d" % i
	var sync := MultiplayerSynchronizer.new()
	sync.name = "Sync"
	var cfg := SceneReplicationConfig.new()
	cfg.add_property(NodePath(".:position"))
	cfg.property_set_replication_mode(NodePath(".:position"), SceneReplicationConfig.REPLICATION_MODE_ALWAYS)
	sync.replication_config = cfg
	sync.replication_interval = 1.0 / HZ
	sync.root_path = NodePath("..")
	p.add_child(sync)
	return p


func _process(delta: float) -> bool:
	if moving:
		t += delta
		var i := 0
		for c in things.get_children():
			c.position = Vector2(i, fmod(t * 10.0 + i, 1000.0))
			i += 1
	return false


func _start() -> void:
	await process_frame
	Engine.max_fps = 60
	if arg("role", "") == "server":
		await _server()
	else:
		await _client()
	await finish()


func _server() -> void:
	var peer: MultiplayerPeer
	if net == "enet":
		peer = ENetMultiplayerPeer.new()
		peer.create_server(arg("port", 0), 8)
	else:
		var cluster := SustenetCluster.new()
		cluster.name = "SustenetCluster"
		cluster.server_name = arg("cluster-name", "bench")
		cluster.bind_address = "127.0.0.1"
		cluster.port = arg("port", 0)
		cluster.master_port = arg("master-port", 0)
		cluster.key_name = arg("key-name", "")
		cluster.key_path = arg("key-path", "")
		cluster.registered.connect(func(_id): cluster_ready = true)
		root.add_child(cluster)
		peer = SustenetMultiplayerPeer.new()
		peer.create_server(cluster)
		await wait_until(func(): return cluster_ready, 15)
	game.multiplayer.multiplayer_peer = peer
	for i in n:
		spawner.spawn(i)
	moving = true
	var left := []
	game.multiplayer.peer_disconnected.connect(func(id): left.append(id))
	var frames_before := Engine.get_process_frames()
	var cluster_node: SustenetCluster = root.get_node_or_null("SustenetCluster")
	var t0 := Time.get_ticks_msec()
	print("MP_SERVER_READY")
	check(await wait_until(func(): return left.size() == 1, 90), "the client came and went")
	moving = false
	var secs := (Time.get_ticks_msec() - t0) / 1000.0
	var fps := (Engine.get_process_frames() - frames_before) / secs
	var stats := ""
	if peer is SustenetMultiplayerPeer:
		var s: Dictionary = peer.get_stats()
		stats = " sent_packets=%d sent_bytes=%d poll_usec_avg=%.0f" % [s.sent_packets, s.sent_bytes, s.poll_usec / float(max(1, s.polls))]
	if cluster_node:
		stats += " node_drain_max_usec=%d" % cluster_node.get_max_drain_usec()
	print("BENCH_SERVER net=%s n=%d fps=%.1f%s" % [net, n, fps, stats])
	game.multiplayer.multiplayer_peer = null


func _client() -> void:
	var peer: MultiplayerPeer
	if net == "enet":
		peer = ENetMultiplayerPeer.new()
		peer.create_client("127.0.0.1", arg("port", 0))
	else:
		var client := SustenetClient.new()
		client.master_port = arg("master-port", 0)
		client.master_public_key = arg("master-key", "")
		var name: String = arg("cluster-name", "bench")
		client.clusters_received.connect(func(list):
			for c in list:
				if c.cluster_name == name:
					client.join_cluster(c.id)
					return
			client.request_clusters.call_deferred())
		client.login_succeeded.connect(func(_id): client.request_clusters())
		root.add_child(client)
		peer = SustenetMultiplayerPeer.new()
		peer.create_client(client)
		client.login("bench", "")
	game.multiplayer.multiplayer_peer = peer
	if not check(await wait_until(func(): return things.get_child_count() == n, 60), "all %d nodes spawned" % n):
		return
	await wait_seconds(1.0)   # let the first burst settle
	var last := {}
	for c in things.get_children():
		last[c.name] = c.position
	var updates := 0
	var frames := 0
	var t0 := Time.get_ticks_usec()
	while Time.get_ticks_usec() - t0 < int(WINDOW * 1e6):
		await process_frame
		frames += 1
		for c in things.get_children():
			if c.position != last[c.name]:
				updates += 1
				last[c.name] = c.position
	var secs := (Time.get_ticks_usec() - t0) / 1e6
	var rate := updates / secs
	var stats := ""
	if peer is SustenetMultiplayerPeer:
		var s: Dictionary = peer.get_stats()
		stats = " received_packets=%d received_bytes=%d" % [s.received_packets, s.received_bytes]
	print("BENCH_CLIENT net=%s n=%d updates_per_s=%.0f nominal_per_s=%.0f of_nominal=%.1f%% client_fps=%.1f%s" % [
		net, n, rate, n * HZ, 100.0 * rate / (n * HZ), frames / secs, stats])
	check(updates > 0, "position updates arrived")
	peer.close()
	game.multiplayer.multiplayer_peer = null
	await wait_frames(3)
