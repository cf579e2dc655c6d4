## ENet vs Sustenet equivalence: the same game (mp_game.gd) runs in three Godot processes, a
## server and two clients, once over ENetMultiplayerPeer and once over
## SustenetMultiplayerPeer; only the line that makes the peer differs. Each process checks
## what it sees (PASS/FAIL lines) and prints one `OUTCOME ...` line with peer ids left out;
## godot-tests.sh asserts that ENet's and Sustenet's OUTCOME lines are the same.
##   godot --headless --path demo_project -s res://tests/test_mp.gd -- --role=server|client \
##     --net=enet|sustenet [--index=0|1] [--port=P] [--master-port=P --master-key=K \
##     --key-path=F --key-name=N --cluster-name=N]
extends "res://tests/test_base.gd"

const Game = preload("res://tests/mp_game.gd")
const POS_TOLERANCE := 0.01

var game: Game
var net := "enet"
var sustenet_client: SustenetClient
var cluster_ready := false
var joined := false


func _initialize() -> void:
	begin("mp", 80)
	net = arg("net", "enet")
	test_name = "mp %s %s%s" % [net, arg("role", "?"), arg("index", "")]
	game = Game.new()
	game.name = "Game"
	root.add_child(game)
	_start.call_deferred()


func _start() -> void:
	await process_frame  # the tree (and game.multiplayer) is ready from here
	if arg("role", "") == "server":
		_server()
	else:
		_client()


# --- the one place the two runs differ: making the peer ------------------------------------

func _make_server_peer() -> MultiplayerPeer:
	if net == "enet":
		var p := ENetMultiplayerPeer.new()
		check(p.create_server(arg("port", 0), 8) == OK, "ENet create_server OK")
		return p
	var cluster := SustenetCluster.new()
	cluster.server_name = arg("cluster-name", "mp_cluster")
	cluster.bind_address = "127.0.0.1"
	cluster.port = arg("port", 0)
	cluster.master_port = arg("master-port", 0)
	cluster.key_name = arg("key-name", "mp_cluster")
	cluster.key_path = arg("key-path", "")
	cluster.registered.connect(func(_id): cluster_ready = true)
	root.add_child(cluster)
	var p := SustenetMultiplayerPeer.new()
	check(p.get_connection_status() == MultiplayerPeer.CONNECTION_DISCONNECTED, "a new peer is DISCONNECTED")
	check(p.create_server(cluster) == OK, "Sustenet create_server OK (starts the cluster)")
	check(cluster.is_running(), "the cluster runs")
	check(game.multiplayer.max_sync_packet_size <= SustenetMultiplayerPeer.MAX_DATAGRAM_PACKET_SIZE,
			"create_server lowered max_sync_packet_size to fit a datagram (%d)" % game.multiplayer.max_sync_packet_size)
	return p


func _make_client_peer() -> MultiplayerPeer:
	if net == "enet":
		var p := ENetMultiplayerPeer.new()
		check(p.create_client("127.0.0.1", arg("port", 0)) == OK, "ENet create_client OK")
		return p
	sustenet_client = SustenetClient.new()
	sustenet_client.master_port = arg("master-port", 0)
	sustenet_client.master_public_key = arg("master-key", "")
	root.add_child(sustenet_client)
	var name: String = arg("cluster-name", "mp_cluster")
	sustenet_client.clusters_received.connect(func(list):
		for c in list:
			if c.cluster_name == name:
				sustenet_client.join_cluster(c.id)
				return
		sustenet_client.request_clusters.call_deferred())
	sustenet_client.cluster_joined.connect(func(_c, _id): joined = true)
	sustenet_client.login_succeeded.connect(func(_id): sustenet_client.request_clusters())
	var p := SustenetMultiplayerPeer.new()
	# Client 0 makes its peer before it is on the cluster (CONNECTING until welcomed);
	# client 1 after cluster_joined.
	if arg("index", 0) == 1:
		sustenet_client.login("mp_client_1", "")
		await wait_until(func(): return joined, 20)
	check(p.create_client(sustenet_client) == OK, "Sustenet create_client OK")
	check(p.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTING, "the client peer is CONNECTING until welcomed")
	if arg("index", 0) == 0:
		sustenet_client.login("mp_client_0", "")
	return p


# --- server ----------------------------------------------------------------------------------

func _server() -> void:
	var peer := _make_server_peer()
	game.multiplayer.multiplayer_peer = peer
	var connected := []
	game.multiplayer.peer_connected.connect(func(id):
		connected.append(id)
		game.spawner.spawn(id))
	var gone := []
	game.multiplayer.peer_disconnected.connect(func(id): gone.append(id))
	if net == "sustenet":
		await wait_until(func(): return cluster_ready, 15)
	print("MP_SERVER_READY")
	if not check(await wait_until(func(): return connected.size() == 2, 40), "two peers connected (%s)" % [connected]):
		await finish()
		return
	check(connected.all(func(id): return id >= 2 and id <= 2147483647), "peer ids in 2..2^31-1 (%s)" % [connected])
	check(game.multiplayer.get_unique_id() == 1 and game.multiplayer.is_server(), "the server is peer 1")
	# Everyone is in: authority rpcs from the server.
	await wait_seconds(0.3)
	game.announce.rpc("welcome")
	game.tick.rpc(7)
	if not check(await wait_until(func(): return game.reports.size() == 2, 30), "both clients reported"):
		await finish()
		return
	var chats_ok := true
	for id in connected:
		var got: Array = game.chats.get(id, [])
		chats_ok = chats_ok and got == range(1, Game.CHATS + 1)
	check(chats_ok, "every client's chats arrived once, in order, with its sender id (%s)" % [game.chats])
	check(game.bad_senders.is_empty(), "get_remote_sender_id() matched the sender (bad: %s)" % [game.bad_senders])
	check(game.announces.is_empty(), "an authority rpc sent by a client did not run on the server")
	check(game.ticks == [7], "call_local: tick ran on the server too (%s)" % [game.ticks])
	var pos_ok := true
	for id in connected:
		var n: Node2D = game.player_node(id)
		pos_ok = pos_ok and n != null and n.position.distance_to(Game.target_position(id)) < POS_TOLERANCE
	check(pos_ok, "the server sees each player at its synchronized position")
	var relay_ok: bool = game.reports.values().all(func(r): return r.get("poke_ok", false))
	print("OUTCOME server: peers=%d spawned=%d chats_in_order=%s senders_ok=%s announce_refused=%s tick_local=%s positions=%s client_reports=%s" % [
		connected.size(), game.players.get_child_count(), chats_ok, game.bad_senders.is_empty(),
		game.announces.is_empty(), game.ticks == [7], pos_ok, relay_ok])
	game.finish.rpc()
	check(await wait_until(func(): return gone.size() == 2, 20), "both peers disconnected (%s)" % [gone])
	game.multiplayer.multiplayer_peer = null
	await finish()


# --- client ----------------------------------------------------------------------------------

func _client() -> void:
	var events := []
	game.multiplayer.connected_to_server.connect(func(): events.append("connected_to_server"))
	game.multiplayer.connection_failed.connect(func(): events.append("connection_failed"))
	game.multiplayer.server_disconnected.connect(func(): events.append("server_disconnected"))
	var peer: MultiplayerPeer = await _make_client_peer()
	game.multiplayer.multiplayer_peer = peer
	if not check(await wait_until(func(): return events.has("connected_to_server"), 30), "connected_to_server (%s)" % [events]):
		await finish()
		return
	var me: int = game.multiplayer.get_unique_id()
	check(me >= 2, "own peer id >= 2 (%d)" % me)
	check(not game.multiplayer.is_server(), "not the server")
	# The other client, through the server's relay.
	var found := []  # lambdas capture locals by value: collect into an array
	await wait_until(func():
		for id in game.multiplayer.get_peers():
			if id != 1 and id != me and not found.has(id):
				found.append(id)
		return not found.is_empty(), 20)
	var other: int = found[0] if found.size() == 1 else 0
	check(other != 0, "learned the other client's peer id through the relay")
	check(await wait_until(func(): return game.player_node(me) != null and game.player_node(other) != null, 20),
			"both players spawned here by the server's MultiplayerSpawner")
	var mine: Node2D = game.player_node(me)
	check(mine != null and mine.is_multiplayer_authority(), "this peer has authority over its own player")
	if mine:
		mine.position = Game.target_position(me)
	var pos_ok: bool = await wait_until(func():
		var o: Node2D = game.player_node(other)
		return o != null and o.position.distance_to(Game.target_position(other)) < POS_TOLERANCE, 20)
	check(pos_ok, "the other player's position arrived through its MultiplayerSynchronizer")
	for n in range(1, Game.CHATS + 1):
		game.chat.rpc_id(1, n, me)
	# Not allowed: only the authority (the server) may call announce.
	game.announce.rpc_id(1, "from a client")
	game.poke.rpc_id(other, me * 3)
	var got_server_rpcs: bool = await wait_until(func(): return game.announces.size() == 1 and game.ticks == [7], 20)
	check(got_server_rpcs, "announce and tick from the server arrived (%s %s)" % [game.announces, game.ticks])
	check(game.announces.size() == 1 and game.announces[0][0] == 1, "announce came from peer 1")
	var poked: bool = await wait_until(func(): return game.pokes.size() == 1, 20)
	var poke_ok: bool = poked and game.pokes[0] == [other, other * 3]
	check(poke_ok, "a poke relayed from the other client, with its sender id (%s)" % [game.pokes])
	game.report.rpc_id(1, {"poke_ok": poke_ok})
	check(await wait_until(func(): return game.finished, 30), "finish from the server")
	print("OUTCOME client: spawned=%d own_authority=%s other_position=%s announce=%d tick=%s poke_relayed=%s events=%s" % [
		game.players.get_child_count(), mine != null and mine.is_multiplayer_authority(), pos_ok,
		game.announces.size(), game.ticks, poke_ok, events])
	game.multiplayer.multiplayer_peer.close()
	game.multiplayer.multiplayer_peer = null
	if sustenet_client:
		sustenet_client.disconnect_from_server()
	await wait_frames(3)
	await finish()
