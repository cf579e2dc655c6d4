## Reconnection under SceneMultiplayer: mp_game.gd over SustenetMultiplayerPeer, the cluster's
## game under /root/Server and the client's under /root/Client, each with its own
## SceneMultiplayer, in one process with a SustenetMaster, SustenetCluster and SustenetClient;
## the client reaches the cluster through tcp_proxy.gd, which the test cuts and restores.
## Reliable @rpcs go both ways before, during and after the cut. Checks: no
## server_disconnected and no peer_disconnected on either side, the peers stay CONNECTED, and
## every @rpc arrives once and in order.
##   godot --headless --path demo_project -s res://tests/test_mp_reconnect.gd -- \
##     --key-dir=DIR --key-name=test_cluster --master-port=P --cluster-port=P2
extends "res://tests/test_base.gd"

const Game = preload("res://tests/mp_game.gd")
const PER_PHASE := 25

var proxy: Node
var server_game: Game
var client_game: Game
var events := []
var up := 0
var down := 0
var client_peer_id := 0


func _initialize() -> void:
	begin("mp_reconnect", 90)
	var games := add_game_branches(["Server", "Client"], Game)
	server_game = games["Server"]
	client_game = games["Client"]
	_run.call_deferred()


func _burst() -> void:
	for i in PER_PHASE:
		up += 1
		check_quiet(client_game.rpc_id(1, "chat", up, client_game.multiplayer.get_unique_id()) == OK, "chat rpc %d accepted" % up)
		down += 1
		check_quiet(server_game.rpc_id(client_peer_id, "tick", down) == OK, "tick rpc %d accepted" % down)


## Counts a failure only (no PASS line per packet).
func check_quiet(ok: bool, what: String) -> void:
	if not ok:
		check(false, what)


func _run() -> void:
	await process_frame
	set_multiplayer(SceneMultiplayer.new(), NodePath("/root/Server"))
	set_multiplayer(SceneMultiplayer.new(), NodePath("/root/Client"))
	proxy = load("res://tests/tcp_proxy.gd").new()
	root.add_child(proxy)
	var proxy_port: int = proxy.listen()
	proxy.upstream = func(): return w_cluster.get_bound_tcp_port()
	world_public_port = proxy_port
	if not await start_world():
		await stop_world()
		await finish()
		return
	var sm: SceneMultiplayer = server_game.multiplayer
	var cm: SceneMultiplayer = client_game.multiplayer
	check(sm != cm and sm.root_path == NodePath("/root/Server"), "two SceneMultiplayers, one per branch")
	var server_peer := SustenetMultiplayerPeer.new()
	check(server_peer.create_server(w_cluster) == OK, "create_server OK")
	sm.multiplayer_peer = server_peer
	sm.peer_connected.connect(func(id): client_peer_id = id)
	sm.peer_disconnected.connect(func(id): events.append("server: peer_disconnected %d" % id))
	var client_peer := SustenetMultiplayerPeer.new()
	check(client_peer.create_client(w_client) == OK, "create_client OK (the client is on the cluster already)")
	cm.multiplayer_peer = client_peer
	cm.connected_to_server.connect(func(): events.append("connected_to_server"))
	cm.server_disconnected.connect(func(): events.append("server_disconnected"))
	cm.peer_disconnected.connect(func(id): events.append("client: peer_disconnected %d" % id))
	if not check(await wait_until(func(): return events.has("connected_to_server") and client_peer_id != 0, 15),
			"connected_to_server, and the server saw the peer (%s)" % [events]):
		await stop_world()
		await finish()
		return
	check(client_peer_id == cm.get_unique_id(), "both sides agree on the client's peer id (%d)" % client_peer_id)
	check(server_peer.get_player_id(client_peer_id) == world_player_id, "get_player_id(peer id) is the Sustenet player id")
	var reconnecting := [0, 0]
	w_client.reconnecting.connect(func(_r, _m): reconnecting[0] += 1)
	w_client.reconnected.connect(func(_ms): reconnecting[1] += 1)

	_burst()
	proxy.cut()
	check(await wait_until(func(): return reconnecting[0] == 1, 10), "the client is reconnecting")
	check(client_peer.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED, "the client's peer stays CONNECTED while the link is down")
	_burst()   # sent while the link is down: kept for after the reconnect
	await wait_seconds(0.5)
	proxy.restore()
	check(await wait_until(func(): return reconnecting[1] == 1, 15), "the client reconnected")
	_burst()
	var total := 3 * PER_PHASE
	check(await wait_until(func():
		return server_game.chats.get(client_peer_id, []).size() >= total and client_game.ticks.size() >= total, 15),
			"every @rpc arrived (server %d, client %d of %d)" % [server_game.chats.get(client_peer_id, []).size(), client_game.ticks.size(), total])
	await wait_seconds(0.3)
	check(server_game.chats.get(client_peer_id, []) == range(1, total + 1), "client -> server @rpcs: once each, in order")
	check(client_game.ticks == range(1, total + 1), "server -> client @rpcs: once each, in order")
	check(server_game.bad_senders.is_empty(), "get_remote_sender_id() right after the reconnect")
	check(events == ["connected_to_server"], "SceneMultiplayer saw no disconnect on either side (%s)" % [events])
	cm.multiplayer_peer = null
	sm.multiplayer_peer = null
	await stop_world()
	await finish()
