## A cluster of the `mp_handoff` test (test_mp_handoff.gd is the client): mp_game.gd over a
## SustenetMultiplayerPeer on a SustenetCluster, in its own Godot process.
##   godot --headless --path demo_project -s res://tests/test_mp_handoff_cluster.gd -- \
##     --side=a|b --master-port=P --key-path=F --key-name=N --port=P2 --report-dir=DIR \
##     [--target-cluster=ID]
## Both spawn a player node per peer and announce their side to it. Side a (where a second
## client stays) moves the peer that sends chats to --target-cluster with transfer_peer once 30
## chats arrived; side b takes it. Each writes the
## chat numbers it received to DIR/<side>.json.
extends "res://tests/test_base.gd"

const Game = preload("res://tests/mp_game.gd")
const MOVE_AFTER := 30

var game: Game
var cluster: SustenetCluster
var peer: SustenetMultiplayerPeer
var side := ""
var player := 0          # the last peer that joined here (on b: the walker)
var player_sid := 0      # its Sustenet player id
var walker := 0          # on a: the peer that sends the chats
var left_reason := -1
var peer_gone := false
var moved := false
var walker_sid := 0


func _initialize() -> void:
	begin("mp_handoff_cluster", 80)
	side = arg("side", "")
	test_name = "mp_handoff_" + side
	game = Game.new()
	game.name = "Game"
	root.add_child(game)
	_run.call_deferred()


func _run() -> void:
	await process_frame
	Engine.max_fps = 60
	cluster = SustenetCluster.new()
	cluster.server_name = "mp_" + side
	cluster.bind_address = "127.0.0.1"
	cluster.port = arg("port", 0)
	cluster.master_port = arg("master-port", 0)
	cluster.key_name = arg("key-name", "")
	cluster.key_path = arg("key-path", "")
	cluster.player_disconnected.connect(func(id, reason):
		if id == (peer.get_player_id(walker) if side == "a" else player_sid) or (side == "a" and id == walker_sid):
			left_reason = reason)
	cluster.transfer_failed.connect(func(id, r, m): check(false, "transfer_failed(%d, %s, %s)" % [id, SustenetClient.reason_text(r), m]))
	root.add_child(cluster)
	peer = SustenetMultiplayerPeer.new()
	check(peer.create_server(cluster) == OK, "create_server OK")
	game.multiplayer.multiplayer_peer = peer
	game.multiplayer.peer_connected.connect(func(id):
		player = id
		player_sid = peer.get_player_id(id)
		game.spawner.spawn(id)
		game.announce.rpc_id(id, side))
	game.multiplayer.peer_disconnected.connect(func(id):
		var n: Node = game.player_node(id)
		if n:
			n.queue_free()   # the game's own cleanup, as with ENet
		if id == (walker if side == "a" else player):
			peer_gone = true)
	if not check(await wait_until(func(): return cluster.get_cluster_id() != 0, 15), "registered"):
		await finish()
		return
	print("MP_SERVER_READY id=%d" % cluster.get_cluster_id())
	if not check(await wait_until(func(): return player != 0, 40), "the walker's peer connected"):
		await finish()
		return
	check(player_sid > 0 and peer.get_peer_id(player_sid) == player,
			"get_player_id / get_peer_id convert both ways (%d <-> %d)" % [player, player_sid])
	if side == "a":
		await _side_a()
	else:
		await _side_b()
	game.multiplayer.multiplayer_peer = null   # a stayer still on a: its game goes first
	await finish()


func _chats() -> Array:
	return game.chats.get(player, [])


func _write(list: Array) -> void:
	var f := FileAccess.open(arg("report-dir", "").path_join(side + ".json"), FileAccess.WRITE)
	f.store_string(JSON.stringify(list))
	f.close()


func _side_a() -> void:
	var found := []
	var enough := func():
		for id in game.chats:
			if game.chats[id].size() >= MOVE_AFTER and not found.has(id):
				found.append(id)
		return not found.is_empty()
	if not check(await wait_until(enough, 30), "%d chats before the move" % MOVE_AFTER):
		return
	walker = found[0]
	walker_sid = peer.get_player_id(walker)
	var target: int = int(arg("target-cluster", "0"))
	check(peer.transfer_peer(walker, target, PackedByteArray()) == OK, "transfer_peer OK")
	check(await wait_until(func(): return peer_gone, 15), "the moved player's peer left this game (peer_disconnected)")
	check(await wait_until(func(): return left_reason >= 0, 15), "the player left the cluster")
	check(left_reason == SustenetClient.REASON_REDIRECTED,
			"it left redirected (%s)" % SustenetClient.reason_text(left_reason))
	await wait_frames(2)
	check(game.player_node(walker) == null, "its node, freed by the game, is gone here")
	_write(game.chats.get(walker, []))
	print("%s: received %d chats" % [test_name, game.chats.get(walker, []).size()])


func _side_b() -> void:
	check(await wait_until(func(): return game.reports.has(player), 40), "the walker reported done")
	_write(_chats())
	print("%s: received %d chats" % [test_name, _chats().size()])
	game.finish.rpc_id(player)
	check(await wait_until(func(): return peer_gone, 15), "the walker's peer left")
