## What SceneMultiplayer's server relay costs over SustenetMultiplayerPeer (measured, not
## asserted; figures in docs/performance.md). One process: a SustenetMaster and SustenetCluster
## with the server game under /root/Server, and M SustenetClients, each with its own
## SceneMultiplayer under /root/C<i>. Every client owns a player node whose
## MultiplayerSynchronizer sends its position at 20 Hz; with relay on, SceneMultiplayer sends it
## through the cluster to every other client. For M = --clients, relay on then off, prints the
## packets and bytes the cluster's peer sent per second and what each client sent.
##   godot --headless --path demo_project -s res://tests/test_mp_relay.gd -- \
##     --key-dir=DIR --key-name=test_cluster --master-port=P --cluster-port=P2 --clients=M
extends "res://tests/test_base.gd"

const Game = preload("res://tests/mp_game.gd")
const WINDOW := 4.0

var server_game: Game
var clients: Array = []     # [SustenetClient, Game, SustenetMultiplayerPeer]


func _initialize() -> void:
	begin("mp_relay", 110)
	_run.call_deferred()


func _branch(name: String) -> Game:
	var b := Node.new()
	b.name = name
	root.add_child(b)
	var g: Game = Game.new()
	g.name = "Game"
	b.add_child(g)
	set_multiplayer(SceneMultiplayer.new(), b.get_path())
	return g


func _measure(m: int, relay: bool) -> void:
	server_game = _branch("Server%s" % relay)
	var sm: SceneMultiplayer = server_game.multiplayer
	sm.server_relay = relay
	var sp := SustenetMultiplayerPeer.new()
	sp.server_relay = relay
	check(sp.create_server(w_cluster) == OK, "create_server OK")
	sm.multiplayer_peer = sp
	var joined := []
	sm.peer_connected.connect(func(id):
		joined.append(id)
		server_game.spawner.spawn(id))
	clients = []
	for i in m:
		var c := SustenetClient.new()
		c.master_port = w_master.get_bound_port()
		c.master_public_key = w_master.get_public_key()
		c.login_succeeded.connect(func(_id): c.join_cluster(world_cluster_id))
		root.add_child(c)
		var g := _branch("C%d%s" % [i, relay])
		g.multiplayer.server_relay = relay
		var p := SustenetMultiplayerPeer.new()
		p.create_client(c)
		g.multiplayer.multiplayer_peer = p
		c.login("relay_%d" % i, "")
		clients.append([c, g, p])
	check(await wait_until(func(): return joined.size() == m, 60), "%d peers joined (relay %s)" % [m, relay])
	# Each client waits for its own player node, then moves it every frame.
	await wait_until(func():
		return clients.all(func(e): return e[1].player_node(e[1].multiplayer.get_unique_id()) != null), 30)
	await wait_seconds(1.0)
	var s0: Dictionary = sp.get_stats()
	var c0 := 0
	for e in clients:
		c0 += e[2].get_stats().sent_packets
	var t0 := Time.get_ticks_usec()
	var frames := 0
	while Time.get_ticks_usec() - t0 < int(WINDOW * 1e6):
		frames += 1
		for e in clients:
			var g: Game = e[1]
			var me: Node2D = g.player_node(g.multiplayer.get_unique_id())
			if me:
				me.get_node("Sync").replication_interval = 0.05   # 20 Hz
				me.position = Vector2(frames, e[2].get_unique_id() % 997)
		await process_frame
	var secs := (Time.get_ticks_usec() - t0) / 1e6
	var s1: Dictionary = sp.get_stats()
	var c1 := 0
	for e in clients:
		c1 += e[2].get_stats().sent_packets
	var peers_seen: int = clients[0][1].multiplayer.get_peers().size()
	print("RELAY clients=%d relay=%s server_packets_per_s=%.0f server_packets_per_frame=%.1f server_kib_per_s=%.1f client_packets_per_s_each=%.1f peers_known_per_client=%d fps=%.1f" % [
		m, relay, (s1.sent_packets - s0.sent_packets) / secs, (s1.sent_packets - s0.sent_packets) / float(frames),
		(s1.sent_bytes - s0.sent_bytes) / secs / 1024.0, (c1 - c0) / secs / m, peers_seen, frames / secs])
	for e in clients:
		e[1].multiplayer.multiplayer_peer = null
		e[0].disconnect_from_server()
	sm.multiplayer_peer = null
	await wait_frames(5)
	for e in clients:
		e[0].queue_free()
		e[1].get_parent().queue_free()
	server_game.get_parent().queue_free()
	await wait_until(func(): return w_cluster.get_player_count() == 0, 15)


func _run() -> void:
	await process_frame
	Engine.max_fps = 60
	if not await start_world():
		await stop_world()
		await finish()
		return
	w_client.disconnect_from_server()
	await wait_until(func(): return w_cluster.get_player_count() == 0, 10)
	var m: int = arg("clients", 10)
	await _measure(m, true)
	await _measure(m, false)
	await stop_world()
	await finish()
