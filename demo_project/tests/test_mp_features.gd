## SustenetMultiplayerPeer behaviours the equivalence test does not reach, in one process (a
## SustenetMaster, a SustenetCluster with the server game under /root/Server, and clients with
## their own SceneMultiplayers under /root/C1, /root/C2, /root/C3):
## - relay off: clients do not learn about each other, and their peers say relay is off;
## - interest management: update_visibility hides a far player's node (not even spawned) and
##   shows it once the players are near each other on the fragment grid; get_peers_near;
## - refuse_new_connections: a new client's game sees connection_failed;
## - a peer made before its client joined sees connection_failed when the join fails;
## - close() leaves the SustenetClient on the cluster, and a new peer on it connects again;
##   also when the new peer's hello reaches the cluster in the same poll as the old one's bye;
## - a cluster that stops: the server's peer is DISCONNECTED before it emits peer_disconnected,
##   and a handler that makes a new server on it then is left CONNECTED;
## - the plain signal API works beside the peer, and never shows the peer's own packets;
## - disconnect_peer kicks the player: its game sees server_disconnected.
##   godot --headless --path demo_project -s res://tests/test_mp_features.gd -- \
##     --key-dir=DIR --key-name=test_cluster --master-port=P --cluster-port=P2
extends "res://tests/test_base.gd"

const Game = preload("res://tests/mp_game.gd")

var games := {}
var server_peer: SustenetMultiplayerPeer
var joined := []
var left := []


func _initialize() -> void:
	begin("mp_features", 90)
	games = add_game_branches(["Server", "C1", "C2", "C3", "C4"], Game)
	_run.call_deferred()


func _client(name: String) -> SustenetClient:
	var c := SustenetClient.new()
	c.master_port = w_master.get_bound_port()
	c.master_public_key = w_master.get_public_key()
	c.login_succeeded.connect(func(_id): c.join_cluster(world_cluster_id))
	root.add_child(c)
	c.login(name, "")
	return c


func _connect(side: String, client: SustenetClient) -> SustenetMultiplayerPeer:
	var p := SustenetMultiplayerPeer.new()
	check(p.create_client(client) == OK, "%s: create_client OK" % side)
	games[side].multiplayer.multiplayer_peer = p
	return p


func _run() -> void:
	await process_frame
	for side in games:
		set_multiplayer(SceneMultiplayer.new(), NodePath("/root/" + side))
	if not await start_world():
		await stop_world()
		await finish()
		return
	var sm: SceneMultiplayer = games.Server.multiplayer
	sm.server_relay = false
	server_peer = SustenetMultiplayerPeer.new()
	server_peer.server_relay = false
	check(server_peer.create_server(w_cluster) == OK, "create_server OK")
	sm.multiplayer_peer = server_peer
	sm.peer_connected.connect(func(id): joined.append(id))
	sm.peer_disconnected.connect(func(id): left.append(id))
	var c2 := _client("features_2")
	var p1 := _connect("C1", w_client)
	var p2 := _connect("C2", c2)
	var both_connected := func():
		return joined.size() == 2 and p1.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED \
				and p2.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED
	if not check(await wait_until(both_connected, 20), "two peers joined and connected (%s)" % [joined]):
		await stop_world()
		await finish()
		return
	var id1: int = p1.get_unique_id()
	var id2: int = p2.get_unique_id()
	await _relay_off(id1, id2)
	await _plain_api_beside()
	await _interest(id1, id2, c2)
	await _refuse()
	await _join_fails()
	id2 = await _close_and_again(c2, id2)
	await _close_and_hello_at_once(c2, id2)
	await _kick(id1)
	await _cluster_stops()
	for side in games:
		games[side].multiplayer.multiplayer_peer = null
	await stop_world()
	await finish()


func _relay_off(id1: int, id2: int) -> void:
	await wait_seconds(0.5)
	check(games.C1.multiplayer.get_peers() == PackedInt32Array([1]) and games.C2.multiplayer.get_peers() == PackedInt32Array([1]),
			"relay off: each client knows the server only (%s, %s)" % [games.C1.multiplayer.get_peers(), games.C2.multiplayer.get_peers()])
	# A client's rpc() to everyone goes to the server directly (no relay wrapper to refuse).
	games.C1.rpc("chat", 1, id1)
	check(await wait_until(func(): return games.Server.chats.get(id1, []) == [1], 10), "relay off: a client's rpc() to everyone reaches the server")


func _plain_api_beside() -> void:
	var at_cluster := []
	var at_client := []
	w_cluster.packet_received.connect(func(pid, cmd, data, _rel): at_cluster.append([pid, cmd, data]))
	w_client.packet_received.connect(func(cmd, data, _rel): at_client.append([cmd, data]))
	# @rpc traffic meanwhile: none of it may show up as packet_received.
	for i in 5:
		games.C1.rpc_id(1, "chat", 100 + i, games.C1.multiplayer.get_unique_id())
	check(w_client.send(5, PackedByteArray([1, 2, 3])) == OK, "plain send beside the peer OK")
	check(await wait_until(func(): return at_cluster.any(func(p): return p[1] == 5), 10), "the cluster's packet_received got it")
	check(w_cluster.send_to(world_player_id, 6, PackedByteArray([4])) == OK, "plain send_to beside the peer OK")
	check(await wait_until(func(): return at_client.any(func(p): return p[0] == 6), 10), "the client's packet_received got it")
	check(await wait_until(func(): return games.Server.chats.get(games.C1.multiplayer.get_unique_id(), []).size() >= 6, 10),
			"the @rpcs arrived meanwhile")
	check(at_cluster.all(func(p): return p[1] < SustenetMultiplayerPeer.FIRST_RESERVED_COMMAND)
			and at_client.all(func(p): return p[0] < SustenetMultiplayerPeer.FIRST_RESERVED_COMMAND),
			"no peer packet reached packet_received (%d at the cluster, %d at the client)" % [at_cluster.size(), at_client.size()])


func _interest(id1: int, id2: int, c2: SustenetClient) -> void:
	var pl1: int = server_peer.get_player_id(id1)
	var pl2: int = server_peer.get_player_id(id2)
	check(pl1 == world_player_id and server_peer.get_peer_id(pl1) == id1, "get_player_id / get_peer_id both ways")
	check(server_peer.get_player_id(12345) == -1 and server_peer.get_peer_id(777) == 0, "unknown ids: -1 and 0")
	w_cluster.set_player_position(pl1, Vector2(0, 0))
	w_cluster.set_player_position(pl2, Vector2(1000, 0))
	var spawner: MultiplayerSpawner = games.Server.spawner
	for id in [id1, id2]:
		spawner.spawn({"name": "A%d" % id, "authority": 1, "public": false})
	var server_nodes: Node = games.Server.players
	await wait_frames(2)
	var vis1: int = server_peer.update_visibility(server_nodes.get_node("A%d" % id1).get_node("Sync"), id1, 64.0)
	var vis2: int = server_peer.update_visibility(server_nodes.get_node("A%d" % id2).get_node("Sync"), id2, 64.0)
	check(vis1 == 1 and vis2 == 1, "far apart: each avatar is visible to its owner only (%d, %d)" % [vis1, vis2])
	check(Array(server_peer.get_peers_near(Vector2(0, 0), 64.0)) == [id1], "get_peers_near((0, 0), 64) is [peer 1's id]")
	check(await wait_until(func(): return games.C1.player_node(0) == null and games.C1.players.has_node("A%d" % id1), 10),
			"C1 got its own avatar")
	check(await wait_until(func(): return games.C2.players.has_node("A%d" % id2), 10), "C2 got its own avatar")
	await wait_seconds(0.5)
	check(not games.C2.players.has_node("A%d" % id1), "far apart: C2 never received C1's avatar")
	check(not games.C1.players.has_node("A%d" % id2), "far apart: C1 never received C2's avatar")
	# C2 walks next to C1.
	w_cluster.set_player_position(pl2, Vector2(10, 0))
	await wait_frames(2)
	vis1 = server_peer.update_visibility(server_nodes.get_node("A%d" % id1).get_node("Sync"), id1, 64.0)
	check(vis1 == 2, "near: C1's avatar is visible to both (%d)" % vis1)
	server_nodes.get_node("A%d" % id1).position = Vector2(5, 6)
	check(await wait_until(func():
		var n: Node2D = games.C2.players.get_node_or_null("A%d" % id1)
		return n != null and n.position == Vector2(5, 6), 10), "near: C2 now has C1's avatar with its synchronized position")


func _refuse() -> void:
	games.Server.multiplayer.refuse_new_connections = true
	var c3 := _client("features_3")
	var events := []
	games.C3.multiplayer.connection_failed.connect(func(): events.append("connection_failed"))
	games.C3.multiplayer.connected_to_server.connect(func(): events.append("connected_to_server"))
	_connect("C3", c3)
	check(await wait_until(func(): return not events.is_empty(), 15) and events == ["connection_failed"],
			"refuse_new_connections: the new client's game sees connection_failed (%s)" % [events])
	check(c3.is_in_cluster(), "the refused client is still on the cluster (plain API)")
	games.Server.multiplayer.refuse_new_connections = false
	c3.disconnect_from_server()


func _join_fails() -> void:
	var c := SustenetClient.new()
	c.master_port = w_master.get_bound_port()
	c.master_public_key = w_master.get_public_key()
	c.login_succeeded.connect(func(_id): c.join_cluster(987654321))   # no such cluster
	root.add_child(c)
	var events := []
	games.C4.multiplayer.connection_failed.connect(func(): events.append("connection_failed"))
	games.C4.multiplayer.server_disconnected.connect(func(): events.append("server_disconnected"))
	var p := _connect("C4", c)
	c.login("features_4", "")
	check(await wait_until(func(): return not events.is_empty(), 15) and events == ["connection_failed"],
			"a failed join: the waiting peer's game sees connection_failed (%s)" % [events])
	check(p.get_connection_status() == MultiplayerPeer.CONNECTION_DISCONNECTED, "and the peer is DISCONNECTED")


## Returns the new peer's id: a peer that joins again gets another id than the one that
## left (packets still on their way to or from the old peer must not reach the new one).
func _close_and_again(c2: SustenetClient, id2: int) -> int:
	games.C2.multiplayer.multiplayer_peer.close()
	check(await wait_until(func(): return left.has(id2), 10), "close(): the server saw the peer leave")
	check(c2.is_in_cluster(), "close(): the SustenetClient is still on the cluster")
	games.C2.multiplayer.multiplayer_peer = null
	var before := joined.size()
	var again := _connect("C2", c2)
	check(await wait_until(func():
		return joined.size() == before + 1 and again.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED, 10),
			"a new peer on the same SustenetClient connects again")
	var new_id := again.get_unique_id()
	check(new_id >= 2 and new_id != id2 and joined.back() == new_id,
			"with a new peer id (%d, was %d), as the server saw it join" % [new_id, id2])
	check(server_peer.get_player_id(new_id) == c2.get_client_id() and server_peer.get_player_id(id2) == -1,
			"the server maps the new id, not the old one")
	return new_id


## The old peer's bye and the new peer's hello arrive together: the new peer must not be
## welcomed into the old peer's place (which leaves at the next poll); it joins anew.
func _close_and_hello_at_once(c2: SustenetClient, id2: int) -> void:
	var before_left := left.count(id2)
	var before_joined := joined.size()
	games.C2.multiplayer.multiplayer_peer.close()
	var again := SustenetMultiplayerPeer.new()
	check(again.create_client(c2) == OK, "C2: create_client OK")
	again.poll()  # its hello goes out now, right behind the bye
	games.C2.multiplayer.multiplayer_peer = again
	check(await wait_until(func():
		return left.count(id2) == before_left + 1 and joined.size() == before_joined + 1 \
				and again.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED, 10),
			"bye and hello at once: the server saw the old peer leave and the new one join (%s %s)" % [left, joined])
	await wait_seconds(0.3)
	var new_id := again.get_unique_id()
	check(new_id == joined.back() and new_id != id2 and server_peer.get_player_id(new_id) != -1
			and again.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED,
			"and the new peer (id %d) stays on the server" % new_id)


## The cluster stops under the server's peer: it is already DISCONNECTED while it tells the
## game its peers left, so a handler may make a new server at once, and that one stays.
func _cluster_stops() -> void:
	var statuses := []
	var remade := []
	server_peer.peer_disconnected.connect(func(_id):
		statuses.append(server_peer.get_connection_status())
		if remade.is_empty() and server_peer.get_connection_status() == MultiplayerPeer.CONNECTION_DISCONNECTED:
			remade.append(server_peer.create_server(w_cluster)))
	w_cluster.stop()
	check(await wait_until(func(): return not remade.is_empty(), 10), "the cluster stopped: a peer_disconnected handler saw the peer DISCONNECTED")
	check(statuses.all(func(s): return s == MultiplayerPeer.CONNECTION_DISCONNECTED),
			"it said DISCONNECTED already while emitting peer_disconnected (%s)" % [statuses])
	check(remade == [OK], "the handler made a new server on the same peer (%s)" % [remade])
	await wait_seconds(0.3)
	check(server_peer.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED and w_cluster.is_running(),
			"and the new server stays CONNECTED on the restarted cluster")


func _kick(id1: int) -> void:
	var events := []
	games.C1.multiplayer.server_disconnected.connect(func(): events.append("server_disconnected"))
	games.C1.multiplayer.peer_disconnected.connect(func(id): events.append("peer_disconnected %d" % id))
	var reason := [-1]
	w_client.disconnected.connect(func(r, _m): reason[0] = r)
	games.Server.multiplayer.disconnect_peer(id1)
	check(await wait_until(func(): return events.has("server_disconnected"), 10),
			"disconnect_peer: the kicked client's game sees server_disconnected (%s)" % [events])
	check(events == ["peer_disconnected 1", "server_disconnected"], "peer_disconnected(1) first, as with ENet (%s)" % [events])
	check(reason[0] == SustenetClient.REASON_KICKED, "the client was kicked (%s)" % SustenetClient.reason_text(reason[0]))
	# SceneMultiplayer.disconnect_peer forgets the peer itself (no peer_disconnected, as with
	# ENet); the cluster's peer forgets it once the player is gone.
	check(await wait_until(func(): return server_peer.get_player_id(id1) == -1, 10), "the server's peer forgot the kicked peer")
