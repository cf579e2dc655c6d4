## SustenetWebMultiplayerPeer (pure GDScript) beside a native SustenetMultiplayerPeer, both
## clients of a SustenetCluster whose game runs SustenetMultiplayerPeer as server, in one
## process: the cluster (WebSocket port on, ws:// on loopback) registers with a real
## `sustenet master` process that serves web clients too. The server game is under
## /root/Server, the native client's under /root/Native, the web client's under /root/Web,
## each with its own SceneMultiplayer. Checks: both connect (through SustenetNet's helper),
## spawns and MultiplayerSynchronizer positions reach both, and the web game sees what the
## native game sees; reliable, unreliable and unreliable-ordered @rpcs both ways, and
## between the two clients through the relay; close() and a new peer on the same web client;
## transfer_peer moves the web player to a second cluster (/root/ServerB); disconnect_peer on
## the server reaches each client as REASON_KICKED and server_disconnected.
##   godot --headless --path demo_project -s res://tests/test_web_mp.gd -- --master-port=P \
##     --master-ws-port=P --master-key=BASE64 --key-path=FILE --key-name=NAME \
##     --cluster-port=P --cluster-ws-port=P --key-path-b=FILE --key-name-b=NAME \
##     --cluster-port-b=P --cluster-ws-port-b=P
extends "res://tests/test_base.gd"

const Game = preload("res://tests/web_mp_game.gd")

var games := {}
var cluster: SustenetCluster
var cluster_id := 0
var server_peer: SustenetMultiplayerPeer
## The second cluster, that the web player is moved to.
var cluster_b: SustenetCluster
var cluster_b_id := 0
var server_peer_b: SustenetMultiplayerPeer
var joined_b := []
var native: SustenetClient
var web: SustenetWebClient
var native_peer: MultiplayerPeer
var web_peer: MultiplayerPeer
var joined := []
var left := []
var ends := {"Native": [], "Web": []}
var server_gone := {"Native": 0, "Web": 0}
var connected := {"Native": 0, "Web": 0}


func _initialize() -> void:
	begin("web_mp", 90)
	games = add_game_branches(["Server", "ServerB", "Native", "Web"], Game)
	_run.call_deferred()


func _run() -> void:
	await process_frame
	for side in games:
		set_multiplayer(SceneMultiplayer.new(), NodePath("/root/" + side))
	if await _start_cluster() and await _connect_both():
		var ids := {"Native": native_peer.get_unique_id(), "Web": web_peer.get_unique_id()}
		await _spawns_and_sync(ids)
		await _rpcs(ids)
		await _close_and_again(ids)
		await _move(ids)
		await _kicks(ids)
	for side in games:
		games[side].multiplayer.multiplayer_peer = null
	if web != null:
		web.disconnect_from_server()
	if native != null:
		native.disconnect_from_server()
	for c in [cluster, cluster_b]:
		if c != null:
			c.stop()
	await finish()


## A WebSocket listener the node refuses to start (checked before anything is bound).
func _bad_websocket_settings() -> void:
	var bad := SustenetCluster.new()
	bad.key_name = arg("key-name", "")
	bad.key_path = arg("key-path", "")
	bad.websocket_port = arg("cluster-ws-port", 0)
	bad.bind_address = "0.0.0.0"
	check(bad.start() == ERR_INVALID_PARAMETER, "ws:// off loopback: start() refuses with ERR_INVALID_PARAMETER")
	bad.bind_address = "127.0.0.1"
	bad.websocket_cert_file = "res://no_such.crt"
	check(bad.start() == ERR_INVALID_PARAMETER, "a certificate without a key: ERR_INVALID_PARAMETER")
	bad.websocket_cert_file = ""
	bad.websocket_port = 70000
	check(bad.start() == ERR_INVALID_PARAMETER, "websocket_port 70000: ERR_INVALID_PARAMETER")
	check(not bad.is_running(), "and the node does not run")
	bad.free()


func _start_cluster() -> bool:
	_bad_websocket_settings()
	cluster = _serve("Server", "", joined, left)
	server_peer = cluster.get_meta("peer")
	cluster.registered.connect(func(id): cluster_id = id)
	cluster_b = _serve("ServerB", "-b", joined_b, [])
	server_peer_b = cluster_b.get_meta("peer")
	cluster_b.registered.connect(func(id): cluster_b_id = id)
	return check(await wait_until(func(): return cluster_id != 0 and cluster_b_id != 0, 15),
			"both clusters registered with the master")


## A cluster (ports and key from the --cluster-port<suffix>, --cluster-ws-port<suffix>,
## --key-name<suffix>, --key-path<suffix> arguments) whose game under /root/<side> runs a
## SustenetMultiplayerPeer server (kept as the cluster's meta "peer"); it spawns a node for
## each peer that joins and frees it when the peer leaves.
func _serve(side: String, suffix: String, joined_ids: Array, left_ids: Array) -> SustenetCluster:
	var c := SustenetCluster.new()
	c.server_name = "web_mp" + suffix
	c.bind_address = "127.0.0.1"
	c.port = arg("cluster-port" + suffix, 0)
	c.websocket_port = arg("cluster-ws-port" + suffix, 0)
	c.master_port = arg("master-port", 0)
	c.key_name = arg("key-name" + suffix, "")
	c.key_path = arg("key-path" + suffix, "")
	root.add_child(c)
	var peer := SustenetMultiplayerPeer.new()
	check(peer.create_server(c) == OK, "%s: create_server OK (starts the cluster)" % side)
	c.set_meta("peer", peer)
	var game: Game = games[side]
	game.multiplayer.multiplayer_peer = peer
	game.multiplayer.peer_connected.connect(func(id):
		joined_ids.append(id)
		game.spawner.spawn(id))
	game.multiplayer.peer_disconnected.connect(func(id):
		left_ids.append(id)
		var node: Node = game.player_node(id)
		if node != null:
			node.free())
	return c


func _connect_both() -> bool:
	native = SustenetClient.new()
	native.master_port = arg("master-port", 0)
	native.master_public_key = arg("master-key", "")
	web = SustenetWebClient.new()
	web.master_url = "ws://127.0.0.1:%d" % arg("master-ws-port", 0)
	web.heartbeat_sec = 0.2
	for pair in [["Native", native], ["Web", web]]:
		var side: String = pair[0]
		var c: Node = pair[1]
		c.login_succeeded.connect(func(_id): c.join_cluster(cluster_id))
		c.disconnected.connect(func(r, m): ends[side].append([r, m]))
		c.join_failed.connect(func(r, m): print("%s: join_failed %d %s" % [side, r, m]))
		games[side].get_parent().add_child(c)
		var mp: SceneMultiplayer = games[side].multiplayer
		mp.connected_to_server.connect(func(): connected[side] += 1)
		mp.server_disconnected.connect(func(): server_gone[side] += 1)
	native_peer = SustenetNet.create_multiplayer_peer(native)
	web_peer = SustenetNet.create_multiplayer_peer(web)
	check(native_peer is SustenetMultiplayerPeer, "the helper makes a SustenetMultiplayerPeer for a SustenetClient")
	check(web_peer is SustenetWebMultiplayerPeer, "the helper makes a SustenetWebMultiplayerPeer for a SustenetWebClient")
	check(web_peer.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTING
			and native_peer.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTING,
			"both peers are CONNECTING before their clients join")
	games.Native.multiplayer.multiplayer_peer = native_peer
	games.Web.multiplayer.multiplayer_peer = web_peer
	native.login("web_mp_native", "")
	web.login("web_mp_web", "")
	var both := func(): return connected.Native == 1 and connected.Web == 1
	return check(await wait_until(both, 20), "both games saw connected_to_server (joined %s)" % [joined])


## The peers a game's SceneMultiplayer knows, sorted.
func _peers(side: String) -> Array:
	var out := Array(games[side].multiplayer.get_peers())
	out.sort()
	return out


## A sorted summary of a game's player nodes: [name, position] each.
func _players(side: String) -> Array:
	var out := []
	for p in games[side].players.get_children():
		out.append([String(p.name), p.position])
	out.sort()
	return out


func _spawns_and_sync(ids: Dictionary) -> void:
	var nid: int = ids.Native
	var wid: int = ids.Web
	check(nid >= 2 and wid >= 2 and nid != wid, "two distinct peer ids (%d, %d)" % [nid, wid])
	check(server_peer.get_player_id(wid) == web.get_client_id() and web_peer.get_player_id(wid) == web.get_client_id(),
			"the server and the web peer map the web peer id to its player id")
	var know_each_other := func(): return _peers("Web") == [1, nid] and _peers("Native") == [1, wid]
	check(await wait_until(know_each_other, 10),
			"relay: each client knows the server and the other client (%s, %s)" % [
				_peers("Web"), _peers("Native")])
	check(web_peer.is_server_relay_supported(), "the web peer reports relay as the cluster said")
	var spawned := func(): return _players("Native").size() == 2 and _players("Web").size() == 2
	check(await wait_until(spawned, 10), "the server's spawns reach both clients")
	# Each client moves its own node; the synchronizers carry the positions (unreliable).
	for side in ["Native", "Web"]:
		var me: int = ids[side]
		var node: Node2D = games[side].player_node(me)
		if node != null:
			node.position = Game.target_position(me)
	var expected := [[str(nid), Game.target_position(nid)], [str(wid), Game.target_position(wid)]]
	expected.sort()
	var synced := func(): return _players("Server") == expected and _players("Native") == expected and _players("Web") == expected
	check(await wait_until(synced, 10), "MultiplayerSynchronizer: the server and both clients see both positions (web %s, native %s)" % [
			_players("Web"), _players("Native")])
	check(_players("Web") == _players("Native"), "the web game sees the same players as the native one")


func _rpcs(ids: Dictionary) -> void:
	var nid: int = ids.Native
	var wid: int = ids.Web
	for i in Game.CHATS:
		games.Web.rpc_id(1, "chat", i, wid)
		games.Native.rpc_id(1, "chat", i, nid)
	var all := range(Game.CHATS)
	var chatted := func(): return games.Server.chats.get(wid, []) == all and games.Server.chats.get(nid, []) == all
	check(await wait_until(chatted, 10),
			"reliable @rpcs from both clients arrive once, in order (web %s)" % [games.Server.chats.get(wid, [])])
	check(games.Server.bad_senders.is_empty(), "get_remote_sender_id() is right for both")
	games.Server.rpc("announce", "hello")
	for i in 3:
		games.Server.rpc("tick", i)
	var told := func(): return games.Web.announces == [[1, "hello"]] and games.Native.announces == [[1, "hello"]] \
			and games.Web.ticks == [0, 1, 2] and games.Native.ticks == [0, 1, 2]
	check(await wait_until(told, 10),
			"the server's reliable @rpcs reach both clients (web %s %s)" % [games.Web.announces, games.Web.ticks])
	games.Web.rpc_id(nid, "poke", 7)
	games.Native.rpc_id(wid, "poke", 8)
	var poked := func(): return games.Native.pokes == [[wid, 7]] and games.Web.pokes == [[nid, 8]]
	check(await wait_until(poked, 10),
			"client to client through the relay, both ways (native %s, web %s)" % [games.Native.pokes, games.Web.pokes])
	# Unreliable: sent again each frame until one arrives (a datagram may be lost).
	var shouted := func():
		games.Web.rpc_id(1, "shout", 5)
		games.Server.rpc("shout", 6)
		return games.Server.shouts.has([wid, 5]) and games.Web.shouts.has([1, 6]) and games.Native.shouts.has([1, 6])
	check(await wait_until(shouted, 10), "unreliable @rpcs both ways")
	var beat_n := [0]
	var beaten := func():
		beat_n[0] += 1
		games.Server.rpc("beat", beat_n[0])
		return games.Web.beats.size() >= 3 and games.Native.beats.size() >= 3
	check(await wait_until(beaten, 10), "unreliable-ordered @rpcs on channel 3 reach both")
	var ascending := func(l: Array) -> bool:
		for i in range(1, l.size()):
			if l[i] <= l[i - 1]:
				return false
		return true
	check(ascending.call(games.Web.beats) and ascending.call(games.Native.beats), "and never go back in order")
	var st: Dictionary = web_peer.get_stats()
	check(st.sent_packets > 0 and st.received_packets > 0 and st.polls > 0, "the web peer counts its traffic (%s)" % [st])


## The web game closes its peer and joins again with a new one on the same client. The rejoin
## gets a new peer id, so packets still on their way to or from the old peer (the native game's
## synchronizer updates relayed to it, its own relayed to the native game) reach nobody: no
## engine error is printed while the games meet again and their synchronizers run.
func _close_and_again(ids: Dictionary) -> void:
	var wid: int = ids.Web
	var nid: int = ids.Native
	var errors := ErrorLog.new()
	OS.add_logger(errors)
	web_peer.close()
	check(web_peer.get_connection_status() == MultiplayerPeer.CONNECTION_DISCONNECTED, "close(): the web peer is DISCONNECTED")
	check(await wait_until(func(): return left.has(wid), 10), "the server saw the web peer leave (Bye)")
	check(web.is_in_cluster(), "the SustenetWebClient stays on the cluster")
	var again := SustenetWebMultiplayerPeer.new()
	check(again.create_client(web) == OK, "a new peer on the same web client")
	check(again.create_client(web) == ERR_ALREADY_IN_USE, "create_client on an active peer: ERR_ALREADY_IN_USE")
	web_peer = again
	games.Web.multiplayer.multiplayer_peer = again
	check(await wait_until(func(): return connected.Web == 2, 10), "connected_to_server again")
	var new_id := again.get_unique_id()
	check(new_id >= 2 and new_id != wid and server_peer.get_player_id(new_id) == web.get_client_id(),
			"with a new peer id (%d, was %d) the server maps to the same player" % [new_id, wid])
	ids.Web = new_id
	var respawned := func():
		var node: Node2D = games.Web.player_node(new_id)
		if node != null:
			node.position = Game.target_position(new_id)
		return node != null
	check(await wait_until(respawned, 10), "the server's spawn of the new peer reaches the web game")
	var expected := [[str(nid), Game.target_position(nid)], [str(new_id), Game.target_position(new_id)]]
	expected.sort()
	var synced := func(): return _players("Server") == expected and _players("Native") == expected and _players("Web") == expected
	check(await wait_until(synced, 10), "the synchronizers run again between all three (web %s, native %s)" % [
			_players("Web"), _players("Native")])
	OS.remove_logger(errors)
	var unexpected := errors.unexpected("the peer is active; close() it first")
	check(unexpected.is_empty(), "no engine error while the web game left and joined again (%s)" % [unexpected])


## transfer_peer moves the web player to cluster b: its game sees peer 1 go and come back
## (the new cluster's welcome), its @rpcs reach the new server, and the native game, still on
## cluster a, sees it leave.
func _move(ids: Dictionary) -> void:
	var wid: int = ids.Web
	var moved := [false]
	web.redirected.connect(func(_info): moved[0] = true)
	check(server_peer.transfer_peer(wid, cluster_b_id, PackedByteArray()) == OK, "transfer_peer to cluster b OK")
	check(await wait_until(func(): return connected.Web == 3 and joined_b.size() == 1, 20),
			"the web game sees connected_to_server again, from cluster b (joined there: %s)" % [joined_b])
	check(moved[0] and web.get_cluster() != null and web.get_cluster().id == cluster_b_id,
			"the SustenetWebClient was redirected to cluster b")
	var new_id := web_peer.get_unique_id()
	check(new_id == joined_b[0] and server_peer_b.get_player_id(new_id) == web.get_client_id(),
			"cluster b's server knows the web peer (id %d) as the same player" % new_id)
	check(await wait_until(func(): return _peers("Native") == [1], 10), "the native game on cluster a saw the web player leave")
	games.Web.rpc_id(1, "chat", 99, new_id)
	check(await wait_until(func(): return games.ServerB.chats.get(new_id, []) == [99], 10),
			"a reliable @rpc from the web game reaches cluster b's game")
	ids.Web = new_id


func _kicks(ids: Dictionary) -> void:
	# close() above ended the first peer's game once (server_disconnected): one more now.
	var gone: int = server_gone.Web
	server_peer_b.disconnect_peer(ids.Web)
	check(await wait_until(func(): return server_gone.Web == gone + 1 and not ends.Web.is_empty(), 10),
			"disconnect_peer: the web game sees server_disconnected")
	check(not ends.Web.is_empty() and ends.Web[0][0] == SustenetWebClient.REASON_KICKED,
			"the SustenetWebClient's disconnected says REASON_KICKED (%s)" % [ends.Web])
	check(web_peer.get_connection_status() == MultiplayerPeer.CONNECTION_DISCONNECTED, "the web peer is DISCONNECTED")
	server_peer.disconnect_peer(ids.Native)
	check(await wait_until(func(): return server_gone.Native == 1 and not ends.Native.is_empty(), 10),
			"disconnect_peer: the native game sees server_disconnected")
	check(not ends.Native.is_empty() and ends.Native[0][0] == SustenetClient.REASON_KICKED,
			"the SustenetClient's disconnected says REASON_KICKED (%s)" % [ends.Native])
	check(ends.Web.size() == 1 and ends.Native.size() == 1, "each client ended once")
