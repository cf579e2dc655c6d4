## Server meshing through the Godot API: a client (this process) plays mp_game.gd over a
## SustenetMultiplayerPeer on cluster a, sending a reliable chat @rpc every frame; cluster a
## moves it to cluster b with transfer_peer (test_mp_handoff_cluster.gd, two more processes).
## A second client (the stayer, its own SceneMultiplayer under /root/Stayer in this process)
## stays on cluster a; the walker learns it through relay.
## Checks: the peer object is never re-created; the game sees peer_disconnected(1) once and
## connected_to_server twice, never server_disconnected, and peer_disconnected of the stayer
## (the old cluster's players leave the game at the move); the node cluster a spawned is freed and
## cluster b spawns a new one; every chat whose rpc_id() returned OK reached exactly one cluster
## exactly once, in order (a's list then b's).
##   godot --headless --path demo_project -s res://tests/test_mp_handoff.gd -- \
##     --master-port=P --master-key=K --report-dir=DIR
extends "res://tests/test_base.gd"

const Game = preload("res://tests/mp_game.gd")
const AFTER_MOVE := 30

var game: Game
var client: SustenetClient
var events := []
var sent: Array[int] = []
var sent_after_move := 0
var sending := false


var stayer_game: Game


func _initialize() -> void:
	begin("mp_handoff", 80)
	game = Game.new()
	game.name = "Game"
	root.add_child(game)
	var b := Node.new()
	b.name = "Stayer"
	root.add_child(b)
	stayer_game = Game.new()
	stayer_game.name = "Game"
	b.add_child(stayer_game)
	_run.call_deferred()


## The stayer: a second client on cluster a, through its own SceneMultiplayer.
func _stayer() -> SustenetMultiplayerPeer:
	set_multiplayer(SceneMultiplayer.new(), NodePath("/root/Stayer"))
	var c := SustenetClient.new()
	c.master_port = arg("master-port", 0)
	c.master_public_key = arg("master-key", "")
	c.clusters_received.connect(func(list):
		for ci in list:
			if ci.cluster_name == "mp_a":
				c.join_cluster(ci.id)
				return
		c.request_clusters.call_deferred())
	c.login_succeeded.connect(func(_id): c.request_clusters())
	root.add_child(c)
	var p := SustenetMultiplayerPeer.new()
	p.create_client(c)
	stayer_game.multiplayer.multiplayer_peer = p
	c.login("stayer", "")
	return p


func _process(_delta: float) -> bool:
	if sending and game.multiplayer.multiplayer_peer.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED:
		var n := sent.size() + 1
		if game.rpc_id(1, "chat", n, game.multiplayer.get_unique_id()) == OK:
			sent.append(n)
			if events.count("connected_to_server") == 2:
				sent_after_move += 1
	return false


func _run() -> void:
	await process_frame
	Engine.max_fps = 60
	var stayer := _stayer()
	check(await wait_until(func(): return stayer.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED, 30), "the stayer is on cluster a")
	var stayer_id := stayer.get_unique_id()
	var mp := game.multiplayer
	mp.connected_to_server.connect(func(): events.append("connected_to_server"))
	mp.connection_failed.connect(func(): events.append("connection_failed"))
	mp.server_disconnected.connect(func(): events.append("server_disconnected"))
	mp.peer_disconnected.connect(func(id): events.append("peer_disconnected %d" % id))
	client = SustenetClient.new()
	client.master_port = arg("master-port", 0)
	client.master_public_key = arg("master-key", "")
	client.clusters_received.connect(func(list):
		for c in list:
			if c.cluster_name == "mp_a":
				client.join_cluster(c.id)
				return
		client.request_clusters.call_deferred())
	client.login_succeeded.connect(func(_id): client.request_clusters())
	root.add_child(client)
	var peer := SustenetMultiplayerPeer.new()
	check(peer.create_client(client) == OK, "create_client OK")
	mp.multiplayer_peer = peer
	var peer_id := peer.get_instance_id()
	client.login("walker", "")
	if not check(await wait_until(func(): return events.has("connected_to_server"), 30), "connected to cluster a"):
		await finish()
		return
	check(await wait_until(func(): return game.announces.size() == 1 and game.player_node(mp.get_unique_id()) != null, 15),
			"cluster a announced itself and spawned our player")
	var first_node: Node = game.player_node(mp.get_unique_id())
	check(await wait_until(func(): return mp.get_peers().has(stayer_id), 10), "the walker knows the stayer through relay")
	sending = true
	if not check(await wait_until(func(): return events.count("connected_to_server") == 2, 40),
			"connected_to_server again after the move (%s)" % [events]):
		await finish()
		return
	check(await wait_until(func(): return sent_after_move >= AFTER_MOVE, 20), "chats sent on cluster b")
	sending = false
	check(mp.multiplayer_peer.get_instance_id() == peer_id, "the game's multiplayer_peer is the same object")
	check(events == ["connected_to_server", "peer_disconnected %d" % stayer_id, "peer_disconnected 1", "connected_to_server"],
			"signals: connected_to_server, peer_disconnected(stayer), peer_disconnected(1), connected_to_server (%s)" % [events])
	check(not mp.get_peers().has(stayer_id), "the old cluster's other player is gone from the game (%s)" % [mp.get_peers()])
	check(game.announces.map(func(a): return a[1]) == ["a", "b"], "announces from a, then b (%s)" % [game.announces])
	check(not is_instance_valid(first_node), "the node cluster a spawned was freed")
	check(game.player_node(mp.get_unique_id()) != null, "cluster b spawned our player")
	game.report.rpc_id(1, {})
	check(await wait_until(func(): return game.finished, 20), "finish from cluster b")
	var dir: String = arg("report-dir", "")
	await wait_until(func(): return FileAccess.file_exists(dir.path_join("a.json")) and FileAccess.file_exists(dir.path_join("b.json")), 10)
	var a: Array = JSON.parse_string(FileAccess.get_file_as_string(dir.path_join("a.json")))
	var b: Array = JSON.parse_string(FileAccess.get_file_as_string(dir.path_join("b.json")))
	var got: Array[int] = []
	for x in a + b:
		got.append(int(x))
	check(got == sent, "every chat that rpc_id() accepted arrived exactly once, in order: %d sent, a got %d, b got %d" % [sent.size(), a.size(), b.size()])
	print("mp_handoff: %d chats, %d on a, %d on b" % [sent.size(), a.size(), b.size()])
	mp.multiplayer_peer.close()
	client.disconnect_from_server()
	stayer_game.multiplayer.multiplayer_peer = null
	await wait_frames(3)
	await finish()
