## Bad input into the cluster's SceneMultiplayer through SustenetMultiplayerPeer. One process:
## a SustenetMaster and SustenetCluster (its game under /root/Server with its own
## SceneMultiplayer), a good client (its game under /root/Good) sending a reliable chat @rpc
## every frame, and two bad clients driving their peers by hand:
##   bad 1 sends garbage SceneMultiplayer refuses by itself (random bytes, unknown path ids,
##         bogus spawns) and stays; then a 60,000-byte synchronizer packet: it is dropped;
##   bad 2 sends a peer message with an unknown transfer mode on the raw API: it is dropped;
##   bad 3 wraps a 60,000-byte synchronizer packet in a relay request: it is dropped;
##   bad 4 closes and joins again (bye, hello on the raw API) max_rejoins times, each a new
##         peer on the server with a new peer id; the hello after one more bye gets it dropped;
##   bad 5 relays a small packet to everybody (taken), then relays more bytes a second than
##         max_client_relay_bytes_per_sec (lowered to 20,000 for it): it is dropped.
## Checks: the cluster and its game go on, the good client's chats all arrive in order and it is
## never disconnected, and each bad client alone is kicked (peer_disconnected on the server).
##   godot --headless --path demo_project -s res://tests/test_mp_bad_input.gd -- \
##     --key-dir=DIR --key-name=test_cluster --master-port=P --cluster-port=P2
extends "res://tests/test_base.gd"

const Game = preload("res://tests/mp_game.gd")

var server_game: Game
var good_game: Game
var chats_sent := 0
var sending := false
var server_left := []
var good_events := []


func _initialize() -> void:
	begin("mp_bad_input", 90)
	var games := add_game_branches(["Server", "Good"], Game)
	server_game = games["Server"]
	good_game = games["Good"]
	_run.call_deferred()


func _process(_delta: float) -> bool:
	if sending and good_game.multiplayer.multiplayer_peer.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED:
		chats_sent += 1
		if good_game.rpc_id(1, "chat", chats_sent, good_game.multiplayer.get_unique_id()) != OK:
			check(false, "the good client's chat %d was accepted" % chats_sent)
	return false


## A second client on the world's cluster with a peer this test polls by hand.
func _bad_client(name: String) -> Array:
	var c := SustenetClient.new()
	c.master_port = w_master.get_bound_port()
	c.master_public_key = w_master.get_public_key()
	var state := {"joined": false, "kicked": -1}
	c.login_succeeded.connect(func(_id): c.join_cluster(world_cluster_id))
	c.cluster_joined.connect(func(_i, _p): state.joined = true)
	c.disconnected.connect(func(r, _m): state.kicked = r)
	root.add_child(c)
	var p := SustenetMultiplayerPeer.new()
	check(p.create_client(c) == OK, "%s: create_client OK" % name)
	c.login(name, "")
	var ok: bool = await wait_until(func():
		p.poll()
		return p.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED, 15)
	check(ok, "%s: its peer is connected" % name)
	p.set_target_peer(1)
	p.transfer_mode = MultiplayerPeer.TRANSFER_MODE_RELIABLE
	return [c, p, state]


func _run() -> void:
	await process_frame
	Engine.max_fps = 60
	set_multiplayer(SceneMultiplayer.new(), NodePath("/root/Server"))
	set_multiplayer(SceneMultiplayer.new(), NodePath("/root/Good"))
	if not await start_world():
		await stop_world()
		await finish()
		return
	var sm: SceneMultiplayer = server_game.multiplayer
	var server_peer := SustenetMultiplayerPeer.new()
	check(server_peer.create_server(w_cluster) == OK, "create_server OK")
	sm.multiplayer_peer = server_peer
	var joined := []
	sm.peer_connected.connect(func(id): joined.append(id))
	sm.peer_disconnected.connect(func(id): server_left.append(id))
	var good_peer := SustenetMultiplayerPeer.new()
	check(good_peer.create_client(w_client) == OK, "good: create_client OK")
	good_game.multiplayer.multiplayer_peer = good_peer
	good_game.multiplayer.server_disconnected.connect(func(): good_events.append("server_disconnected"))
	if not check(await wait_until(func(): return joined.size() == 1, 15), "the good client's peer joined"):
		await stop_world()
		await finish()
		return
	var good_id: int = joined[0]
	sending = true
	var bad1: Array = await _bad_client("bad1")
	var bad2: Array = await _bad_client("bad2")
	check(joined.size() == 3, "three peers on the server (%s)" % [joined])
	var bad1_id: int = bad1[1].get_unique_id()
	var bad2_id: int = bad2[1].get_unique_id()

	# Garbage SceneMultiplayer refuses by itself: the sender stays (as with ENet).
	var p1: SustenetMultiplayerPeer = bad1[1]
	var rng := RandomNumberGenerator.new()
	rng.seed = 8
	for i in 200:
		var junk := PackedByteArray()
		junk.resize(1 + rng.randi_range(0, 40))
		for j in junk.size():
			junk[j] = rng.randi_range(0, 255)
		if junk[0] & 7 == 7 or junk[0] & 7 == 6:
			junk[0] = 0   # system and sync packets are the peer's to judge: below
		p1.put_packet(junk)
	p1.put_packet(PackedByteArray([0x00, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0]))        # rpc on an unknown path id
	p1.put_packet(PackedByteArray([0x02, 0x01, 0x00, 0x00, 0x00]))              # confirm of an unknown path
	p1.put_packet(PackedByteArray([0x04, 0xFF, 0xFF, 0xFF, 0x7F, 9, 9, 9, 9]))  # spawn by a non-authority
	p1.put_packet(PackedByteArray([0x05, 0x01, 0x00, 0x00, 0x00]))              # despawn of nothing
	var before: int = server_game.chats.get(good_id, []).size()
	check(await wait_until(func(): return server_game.chats.get(good_id, []).size() >= before + 30, 15),
			"the server game goes on after the garbage (good chats keep arriving)")
	check(not server_left.has(bad1_id), "garbage SceneMultiplayer refuses itself does not drop the sender")

	# A synchronizer packet far over any synchronizer: bad 1 is dropped.
	var huge := PackedByteArray()
	huge.resize(60000)
	huge[0] = 6
	check(p1.put_packet(huge) == OK, "bad1: the huge sync packet was sent")
	check(await wait_until(func(): return bad1[2].kicked >= 0, 15), "bad1 was disconnected")
	check(bad1[2].kicked == SustenetClient.REASON_KICKED, "bad1: REASON_KICKED (%s)" % SustenetClient.reason_text(bad1[2].kicked))
	check(await wait_until(func(): return server_left.has(bad1_id), 10), "the server game saw bad1's peer leave")

	# A peer message with an unknown transfer mode, on the raw API: bad 2 is dropped.
	var c2: SustenetClient = bad2[0]
	check(c2.send(SustenetMultiplayerPeer.FIRST_RESERVED_COMMAND, PackedByteArray([9, 0, 1])) == OK, "bad2: raw send OK")
	check(await wait_until(func(): return bad2[2].kicked >= 0, 15), "bad2 was disconnected")
	check(bad2[2].kicked == SustenetClient.REASON_KICKED, "bad2: REASON_KICKED (%s)" % SustenetClient.reason_text(bad2[2].kicked))
	check(await wait_until(func(): return server_left.has(bad2_id), 10), "the server game saw bad2's peer leave")

	# A relay request carrying a synchronizer packet far over any synchronizer: bad 3 is dropped.
	var bad3: Array = await _bad_client("bad3")
	var bad3_id: int = bad3[1].get_unique_id()
	var relayed := PackedByteArray([7, 3, 0, 0, 0, 0])
	relayed.resize(60000)
	relayed[6] = 6
	check(bad3[1].put_packet(relayed) == OK, "bad3: the relayed huge sync packet was sent")
	check(await wait_until(func(): return bad3[2].kicked >= 0, 15), "bad3 was disconnected")
	check(bad3[2].kicked == SustenetClient.REASON_KICKED, "bad3: REASON_KICKED (%s)" % SustenetClient.reason_text(bad3[2].kicked))
	check(await wait_until(func(): return server_left.has(bad3_id), 10), "the server game saw bad3's peer leave")

	# Bye and hello over and over: max_rejoins new peers, then bad 4 is dropped.
	var bad4: Array = await _bad_client("bad4")
	var c4: SustenetClient = bad4[0]
	var bad4_id: int = bad4[1].get_unique_id()
	var bye := SustenetMultiplayerPeer.FIRST_RESERVED_COMMAND + 4
	var hello := SustenetMultiplayerPeer.FIRST_RESERVED_COMMAND + 1
	check(server_peer.max_rejoins == 8, "max_rejoins is 8 by default")
	# Each rejoin is a new peer with a new id (a freed id is not given again at once).
	var ids := [bad4_id]
	for i in server_peer.max_rejoins:
		c4.send(bye, PackedByteArray())
		if not check(await wait_until(func(): return server_left.has(ids.back()), 10), "bad4: bye %d, its peer left" % (i + 1)):
			break
		var joins_before := joined.size()
		c4.send(hello, PackedByteArray([1]))
		if not check(await wait_until(func(): return joined.size() == joins_before + 1, 10)
				and server_peer.get_player_id(joined.back()) == c4.get_client_id(), "bad4: hello %d, its peer joined again" % (i + 1)):
			break
		ids.append(joined.back())
	var distinct := {}
	for id in ids:
		distinct[id] = true
	check(distinct.size() == server_peer.max_rejoins + 1, "bad4: each rejoin got a new peer id (%s)" % [ids])
	check(bad4[2].kicked == -1, "bad4: max_rejoins rejoins are taken")
	c4.send(bye, PackedByteArray())
	check(await wait_until(func(): return server_left.has(ids.back()), 10), "bad4: one bye more, its peer left")
	var joins := joined.size()
	c4.send(hello, PackedByteArray([1]))
	check(await wait_until(func(): return bad4[2].kicked >= 0, 15), "bad4: the hello after one bye more gets it disconnected")
	check(bad4[2].kicked == SustenetClient.REASON_KICKED, "bad4: REASON_KICKED (%s)" % SustenetClient.reason_text(bad4[2].kicked))
	check(joined.size() == joins, "bad4: no peer after the last hello (%s)" % [joined])

	_check_negative_limits()
	# Relay requests over the relayed-bytes budget: bad 5 is dropped.
	check(server_peer.max_client_relay_bytes_per_sec == 1 << 20, "max_client_relay_bytes_per_sec is 1 MiB by default")
	server_peer.max_client_relay_bytes_per_sec = 20000
	var bad5: Array = await _bad_client("bad5")
	var bad5_id: int = bad5[1].get_unique_id()
	var p5: SustenetMultiplayerPeer = bad5[1]
	var relayed_rpc := PackedByteArray([7, 3, 0, 0, 0, 0, 0x00, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0])
	check(p5.put_packet(relayed_rpc) == OK, "bad5: a small relay to everybody was sent")
	await wait_seconds(0.5)
	check(bad5[2].kicked == -1, "bad5: a relay within the budget is taken")
	relayed_rpc.resize(1006)   # 1,000 bytes to relay to each other client
	for i in 40:
		p5.put_packet(relayed_rpc)
	check(await wait_until(func(): return bad5[2].kicked >= 0, 15), "bad5: 40,000 relayed bytes at once get it disconnected")
	check(bad5[2].kicked == SustenetClient.REASON_KICKED, "bad5: REASON_KICKED (%s)" % SustenetClient.reason_text(bad5[2].kicked))
	check(await wait_until(func(): return server_left.has(bad5_id), 10), "the server game saw bad5's peer leave")

	var sent_now := chats_sent
	check(await wait_until(func(): return server_game.chats.get(good_id, []).size() >= sent_now, 15), "the good client's chats keep arriving")
	sending = false
	await wait_seconds(0.3)
	check(server_game.chats.get(good_id, []) == range(1, chats_sent + 1), "every good chat once, in order (%d)" % chats_sent)
	check(not server_left.has(good_id) and good_events.is_empty(), "the good client stayed (%s %s)" % [server_left, good_events])
	check(w_cluster.is_running(), "the cluster runs")
	good_game.multiplayer.multiplayer_peer = null
	sm.multiplayer_peer = null
	await stop_world()
	await finish()


## A negative max_client_sync_packet_size or max_client_relay_bytes_per_sec is refused with an
## error naming the property and its range, and the value stays; 0 is taken.
func _check_negative_limits() -> void:
	var errors_log := ErrorLog.new()
	OS.add_logger(errors_log)
	var p := SustenetMultiplayerPeer.new()
	p.max_client_sync_packet_size = -1
	check(p.max_client_sync_packet_size == 1350,
			"max_client_sync_packet_size -1 is refused, it stays 1350 (got %d)" % p.max_client_sync_packet_size)
	var sync_message := "SustenetMultiplayerPeer: max_client_sync_packet_size -1 must be 0 or more; it stays 1350"
	check(errors_log.has(sync_message), "the error says \"%s\"" % sync_message)
	p.max_client_relay_bytes_per_sec = -5
	check(p.max_client_relay_bytes_per_sec == 1 << 20,
			"max_client_relay_bytes_per_sec -5 is refused, it stays 1048576 (got %d)" % p.max_client_relay_bytes_per_sec)
	var relay_message := "SustenetMultiplayerPeer: max_client_relay_bytes_per_sec -5 must be 0 (no limit) or more; it stays 1048576"
	check(errors_log.has(relay_message), "the error says \"%s\"" % relay_message)
	p.max_client_sync_packet_size = 0
	p.max_client_relay_bytes_per_sec = 0
	check(p.max_client_sync_packet_size == 0 and p.max_client_relay_bytes_per_sec == 0, "0 is taken for both")
	OS.remove_logger(errors_log)
