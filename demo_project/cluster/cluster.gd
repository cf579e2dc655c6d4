## The demo's game server: a SustenetCluster node plus a little GDScript game logic.
##
## Run headless (exported with the "Linux Cluster (headless)" preset, or from the editor
## binary with --headless). Settings come from the SustenetCluster node's exported
## properties, overridden by user arguments after `--`:
##   --name=NAME --port=PORT --udp-port=PORT --public-address=HOST
##   --master-address=HOST --master-port=PORT --key-name=NAME --key-path=FILE
##   --max-connections=N --quit-after=SECONDS
##
## Game logic: positions are relayed to the other players (unreliable), chat is broadcast
## (reliable), the chat line "/kick" kicks its sender (for testing), everybody is told when
## a player joins or leaves, and command 1 (ECHO) is echoed on the channel it came on, so
## `sustenet probe` works against this cluster.
extends Node

const Protocol = preload("res://common/protocol.gd")

## player id -> {"name": String, "pos": Vector2}
var players := {}

@onready var cluster: SustenetCluster = $SustenetCluster


func _enter_tree() -> void:
	# Runs before the children's _ready, i.e. before SustenetCluster autostarts: apply the
	# command line and connect the signals first.
	var c: SustenetCluster = $SustenetCluster
	var args := Protocol.user_args()
	if args.has("name"): c.server_name = args["name"]
	if args.has("port"): c.port = int(args["port"])
	if args.has("udp-port"): c.udp_port = int(args["udp-port"])
	if args.has("bind"): c.bind_address = args["bind"]
	if args.has("public-address"): c.public_address = args["public-address"]
	if args.has("master-address"): c.master_address = args["master-address"]
	if args.has("master-port"): c.master_port = int(args["master-port"])
	if args.has("key-name"): c.key_name = args["key-name"]
	if args.has("key-path"): c.key_path = args["key-path"]
	if args.has("max-connections"): c.max_connections = int(args["max-connections"])
	c.started.connect(_on_started)
	c.stopped.connect(_on_stopped)
	c.registered.connect(_on_registered)
	c.master_lost.connect(_on_master_lost)
	c.player_connected.connect(_on_player_connected)
	c.player_disconnected.connect(_on_player_disconnected)
	c.packet_received.connect(_on_packet_received)
	if args.has("quit-after"):
		get_tree().create_timer(float(args["quit-after"])).timeout.connect(_quit)
	print("demo cluster: '%s' starting, master %s:%d, key '%s'" % [
		c.server_name, c.master_address, c.master_port, c.key_name])


func _ready() -> void:
	if not cluster.autostart and not cluster.is_running():
		var err := cluster.start()
		if err != OK:
			push_error("demo cluster: start() failed: %s" % error_string(err))


func _quit() -> void:
	print("demo cluster: --quit-after reached, stopping")
	cluster.stop()
	get_tree().quit(0)


func _on_started(tcp_port: int, udp_port: int) -> void:
	print("demo cluster: started, tcp %d udp %d" % [tcp_port, udp_port])


func _on_stopped() -> void:
	print("demo cluster: stopped")


func _on_registered(cluster_id: int) -> void:
	# The test harness greps this line for the cluster id.
	print("demo cluster: registered with the master, cluster id=%d" % cluster_id)


func _on_master_lost(message: String) -> void:
	print("demo cluster: lost the master (%s); players stay connected" % message)


func _on_player_connected(id: int, data: PackedByteArray) -> void:
	var player_name := data.get_string_from_utf8()
	if player_name.is_empty():
		player_name = "player %d" % (id % 10000)
	var pos := Vector2(80 + randi() % 400, 80 + randi() % 240)
	# Tell the newcomer who is here, then tell everybody else about the newcomer.
	var others := {}
	for other in players:
		others[other] = players[other]
	cluster.send_var_to(id, Protocol.WELCOME, {"id": id, "players": others})
	players[id] = {"name": player_name, "pos": pos}
	cluster.broadcast_except(id, Protocol.PLAYER_JOINED,
			var_to_bytes({"id": id, "name": player_name, "pos": pos}), true)
	print("demo cluster: %s joined (id %d), %d player(s)" % [player_name, id, players.size()])


func _on_player_disconnected(id: int, reason: int) -> void:
	var p: Dictionary = players.get(id, {})
	players.erase(id)
	cluster.broadcast(Protocol.PLAYER_LEFT, Protocol.encode_id(id))
	print("demo cluster: %s left (%s), %d player(s)" % [
		p.get("name", str(id)), SustenetClient.reason_text(reason), players.size()])


func _on_packet_received(id: int, command: int, data: PackedByteArray, reliable: bool) -> void:
	match command:
		Protocol.ECHO:
			if reliable:
				cluster.send_to(id, command, data)
			else:
				cluster.send_unreliable_to(id, command, data)
		Protocol.POS:
			if not players.has(id) or data.size() != 8:
				return
			var pos := Protocol.decode_pos(data)
			if not pos.is_finite():
				return
			players[id]["pos"] = pos
			cluster.broadcast_except(id, Protocol.POS, Protocol.encode_player_pos(id, pos), false)
		Protocol.CHAT:
			var text := data.get_string_from_utf8().strip_edges().left(200)
			if text.is_empty():
				return
			if text == Protocol.KICK_CHAT:
				cluster.kick(id, Protocol.KICK_MESSAGE)
				return
			var who: String = players.get(id, {}).get("name", str(id))
			cluster.broadcast(Protocol.CHAT, ("%s: %s" % [who, text]).to_utf8_buffer())
		Protocol.KICK_ME:
			cluster.kick(id, "you asked to be kicked")
		_:
			pass
