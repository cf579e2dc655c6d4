## The Godot-way demo (godot_way/) played by a client in this process against two clusters
## running godot_way/main.tscn in two more Godot processes ("gw_west" and "gw_east", side by
## side at x = 0). The client joins the west, chats, walks east over the border and is moved to
## the east cluster; it checks what a Godot game sees: its player spawned by the west, chat
## through @rpc, the position replicated by the MultiplayerSynchronizer, peer_disconnected(1)
## and connected_to_server again at the move, its player spawned by the east past the border,
## chat there, and never server_disconnected.
##   godot --headless --path demo_project -s res://tests/test_godot_way.gd -- \
##     --master-port=P --master-key=K --cluster-name=gw_west --username=walker
extends "res://tests/test_base.gd"

var main: Node
var world: Node2D
var events := []


func _initialize() -> void:
	begin("godot_way", 80)
	main = load("res://godot_way/main.tscn").instantiate()
	root.add_child(main)
	_run.call_deferred()


func _run() -> void:
	await process_frame
	world = main.get_node("World")
	var mp := world.multiplayer
	mp.connected_to_server.connect(func(): events.append("connected_to_server"))
	mp.server_disconnected.connect(func(): events.append("server_disconnected"))
	mp.peer_disconnected.connect(func(id): events.append("peer_disconnected %d" % id))
	if not check(await wait_until(func(): return events.has("connected_to_server"), 30), "connected to the west cluster"):
		await finish()
		return
	var me := mp.get_unique_id()
	check(await wait_until(func(): return world.player_of(me) != null, 10), "the west spawned our player")
	var first: Node2D = world.player_of(me)
	check(first != null and first.position.x < 0, "it starts west of the border (%s)" % [first.position if first else null])
	world.say.rpc_id(1, "hello west")
	check(await wait_until(func(): return world.chat_log.has([me, "hello west"]), 10), "chat through the west (%s)" % [world.chat_log])
	# Walk east until the east cluster has us.
	var walking := func(): world.walk.rpc_id(1, Vector2.RIGHT)
	var timer := Timer.new()
	timer.wait_time = 0.2
	timer.timeout.connect(func():
		if mp.multiplayer_peer.get_connection_status() == MultiplayerPeer.CONNECTION_CONNECTED:
			walking.call())
	root.add_child(timer)
	timer.start()
	walking.call()
	check(await wait_until(func(): return first != null and is_instance_valid(first) and first.position.x > -15.0 or not is_instance_valid(first), 10),
			"the position moves (replicated from the server)")
	if not check(await wait_until(func(): return events.count("connected_to_server") == 2, 30),
			"moved: connected_to_server again (%s)" % [events]):
		await finish()
		return
	check(events == ["connected_to_server", "peer_disconnected 1", "connected_to_server"],
			"the game saw peer_disconnected(1) then connected_to_server, nothing else (%s)" % [events])
	check(not is_instance_valid(first), "the west's player node was freed")
	me = mp.get_unique_id()
	check(await wait_until(func(): return world.player_of(me) != null, 10), "the east spawned our player")
	var second: Node2D = world.player_of(me)
	check(await wait_until(func(): return is_instance_valid(second) and second.position.x > 0, 5),
			"past the border, where the west left it (%s)" % [second.position if is_instance_valid(second) else null])
	var x0: float = second.position.x if second else 0.0
	world.say.rpc_id(1, "hello east")
	check(await wait_until(func(): return world.chat_log.has([me, "hello east"]), 10), "chat through the east")
	check(await wait_until(func(): return second != null and is_instance_valid(second) and second.position.x > x0 + 2.0, 10),
			"still walking east on the east cluster (x %.1f -> %.1f)" % [x0, second.position.x if is_instance_valid(second) else 0.0])
	timer.stop()
	world.walk.rpc_id(1, Vector2.ZERO)
	await wait_seconds(0.2)
	check(not events.has("server_disconnected"), "never server_disconnected")
	mp.multiplayer_peer.close()
	main.get_node("SustenetClient").disconnect_from_server()
	await wait_frames(3)
	await finish()
