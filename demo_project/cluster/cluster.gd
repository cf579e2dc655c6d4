## The demo's game server: a SustenetCluster node plus a little GDScript game logic.
##
## Run headless (exported with the "Linux Cluster (headless)" preset, or from the editor
## binary with --headless). Settings come from the SustenetCluster node's exported
## properties, overridden by user arguments after `--`:
##   --name=NAME --port=PORT --udp-port=PORT --bind=ADDR --public-address=HOST
##   --master-address=HOST --master-port=PORT --key-name=NAME --key-path=FILE
##   --max-connections=N --quit-after=SECONDS
##   --metrics-bind=IP:PORT serve Prometheus /metrics of the cluster there (metrics_bind)
##   --agones               run as an Agones GameServer (agones_enabled; the addon built with
##                          the cargo feature `agones`, docs/godot.md)
##   --agones-sdk-port=PORT the SDK sidecar's gRPC port (default: AGONES_SDK_GRPC_PORT, else 9357)
##   --stop-file=PATH       stop cleanly (exit code 0) once PATH exists, checked 4 times a
##                          second: how scripts and tests end an exported cluster
## Two clusters side by side (server meshing, see README.md):
##   --side=west|east       serve one half of the world: west x < border, east x >= border
##                          (the name defaults to "West Cluster" / "East Cluster")
##   --border-x=X           where the world is split (default 0, the middle of the play area)
##   --neighbour-name=NAME  the cluster on the other side (default: the other side's default name)
##   --neighbour-id=ID      its cluster id, when known (skips the look-up below)
##   --master-key=BASE64 or --master-key-file=PATH   the master's public key, for the look-up
##
## Game logic: positions are relayed to the other players (unreliable) and reported to the
## cluster's fragment grid (set_player_position), chat is broadcast (reliable), the chat line
## "/kick" kicks its sender (for testing), everybody is told when a player joins or leaves, and
## command 1 (ECHO) is echoed on the channel it came on, so `sustenet probe` works against
## this cluster.
##
## Border: a player whose reported position is BORDER_MARGIN past the border is handed over
## to the neighbour with transfer_player(); its state (name, position, colour) travels as
## var_to_bytes and arrives in the neighbour's player_connected.
##
## Instances (portal.gd): the world's portal moves a party into a fresh dungeon instance
## (spawn_instance through the master's agents); a dungeon instance (--dungeon=NAME) sends each
## player back to the world at its exit. Flags: --no-portal, --portal-template=NAME,
## --portal-dungeon=NAME, --portal-stop-when-empty=SEC, --dungeon=NAME, --quit-on-stdin-eof.
##
## Finding the neighbour: a SustenetCluster picks its id at start(), so the neighbour's id is
## not known in advance and clusters have no API to talk to each other. This cluster runs a
## small SustenetClient of its own that asks the master for the cluster list (no login
## needed) every second until the neighbour shows up by name, then every 10 s, and at once
## after a transfer to it failed (the neighbour restarted with a new id).
extends Node

const Protocol = preload("res://common/protocol.gd")
const Portal = preload("res://cluster/portal.gd")

## Default names of the two sides.
const SIDE_NAMES := {"west": "West Cluster", "east": "East Cluster"}

## player id -> {"name": String, "pos": Vector2, "color": Color}
var players := {}
## "" (the whole world, no neighbour), "west" or "east".
var side := ""
var border_x := 0.0
var neighbour_name := ""
var neighbour_id := 0
## player id -> true while its transfer is under way (no more relays to it).
var moving := {}
## player id -> Time.get_ticks_msec() of its last transfer attempt (one a second at most).
var last_try := {}
var lookup: SustenetClient = null
var lookup_timer := 0.0
var warned_no_neighbour := 0

## The world's portal or the dungeon's exit.
var portal: Portal = null

## Bad arguments: this process does not start and exits with code 2.
var refused := false

## --godot-way: this process runs the Godot-way demo's cluster instead.
var godot_way := false

@onready var cluster: SustenetCluster = $SustenetCluster


func _enter_tree() -> void:
	# Runs before the children's _ready, i.e. before SustenetCluster autostarts: apply the
	# command line and connect the signals first.
	var c: SustenetCluster = $SustenetCluster
	var args := Protocol.user_args()
	if args.has("godot-way"):
		# The same export serves the Godot-way demo (godot_way/main.tscn) instead.
		c.autostart = false
		godot_way = true
		get_tree().change_scene_to_file.call_deferred("res://godot_way/main.tscn")
		return
	side = String(args.get("side", "")).to_lower()
	if side != "" and not SIDE_NAMES.has(side):
		push_error("demo cluster: --side must be west or east (got '%s'); serving the whole world" % side)
		side = ""
	if side != "":
		c.server_name = SIDE_NAMES[side]
		neighbour_name = SIDE_NAMES["east" if side == "west" else "west"]
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
	if args.has("metrics-bind"): c.metrics_bind = args["metrics-bind"]
	if args.has("agones"): c.agones_enabled = true
	if args.has("agones-sdk-port"): c.agones_sdk_port = int(args["agones-sdk-port"])
	if args.has("border-x"): border_x = float(args["border-x"])
	if args.has("neighbour-name"): neighbour_name = args["neighbour-name"]
	if args.has("neighbour-id"): neighbour_id = int(args["neighbour-id"])
	portal = Portal.new()
	portal.name = "Portal"
	add_child.call_deferred(portal)
	var bad := portal.configure(self, c, args, side)
	if bad != "":
		push_error("demo cluster: %s" % bad)
		c.autostart = false
		refused = true
		get_tree().quit.call_deferred(2)
		return
	if portal.role == "dungeon" and not args.has("name"):
		c.server_name = "Dungeon %s" % portal.dungeon
	c.started.connect(_on_started)
	c.stopped.connect(_on_stopped)
	c.registered.connect(_on_registered)
	c.master_lost.connect(_on_master_lost)
	c.player_connected.connect(_on_player_connected)
	c.player_disconnected.connect(_on_player_disconnected)
	c.packet_received.connect(_on_packet_received)
	c.transfer_failed.connect(_on_transfer_failed)
	if args.has("quit-after"):
		get_tree().create_timer(float(args["quit-after"])).timeout.connect(_quit.bind("--quit-after reached"))
	if args.has("stop-file"):
		_watch_stop_file(String(args["stop-file"]))
	print("demo cluster: '%s' starting, master %s:%d, key '%s'" % [
		c.server_name, c.master_address, c.master_port, c.key_name])
	if side != "":
		print("demo cluster: serving the %s side of x = %s; neighbour '%s'" % [side, border_x, neighbour_name])
		if neighbour_id == 0:
			_start_lookup(c, args)


func _ready() -> void:
	if godot_way or refused:
		return
	if not cluster.autostart and not cluster.is_running():
		var err := cluster.start()
		if err != OK:
			push_error("demo cluster: start() failed: %s" % error_string(err))


func _process(delta: float) -> void:
	if lookup == null:
		return
	lookup_timer -= delta
	if lookup_timer <= 0.0:
		lookup_timer = 1.0 if neighbour_id == 0 else 10.0
		lookup.request_clusters()


func _watch_stop_file(path: String) -> void:
	var timer := Timer.new()
	timer.wait_time = 0.25
	timer.autostart = true
	timer.timeout.connect(func() -> void:
		if FileAccess.file_exists(path):
			timer.stop()
			_quit("stop file %s found" % path))
	add_child.call_deferred(timer)


func _quit(why: String) -> void:
	print("demo cluster: %s, stopping" % why)
	cluster.stop()
	if lookup:
		lookup.disconnect_from_server()
	get_tree().quit(0)


# --- the neighbour ------------------------------------------------------------------

func _start_lookup(c: SustenetCluster, args: Dictionary) -> void:
	var key: String = args.get("master-key", "")
	if key.is_empty() and args.has("master-key-file"):
		key = FileAccess.get_file_as_string(args["master-key-file"]).strip_edges()
	if key.is_empty():
		key = ProjectSettings.get_setting("sustenet/network/master_public_key", "")
	if key.is_empty():
		push_warning("demo cluster: no --master-key, --master-key-file or --neighbour-id: " +
				"cannot find the neighbour '%s'; players stay on this cluster" % neighbour_name)
		return
	lookup = SustenetClient.new()
	lookup.name = "NeighbourLookup"
	lookup.master_address = c.master_address
	lookup.master_port = c.master_port
	lookup.master_public_key = key
	lookup.clusters_received.connect(_on_clusters_received)
	lookup.error.connect(func(m): lookup_timer = maxf(lookup_timer, 3.0))
	add_child(lookup)


func _on_clusters_received(clusters: Array) -> void:
	var found := 0
	for info: SustenetClusterInfo in clusters:
		if info.cluster_name == neighbour_name and info.id != cluster.get_cluster_id():
			found = info.id
	if found != neighbour_id:
		neighbour_id = found
		if found != 0:
			# The test harness greps this line.
			print("demo cluster: neighbour '%s' is cluster id=%d" % [neighbour_name, found])
		else:
			print("demo cluster: neighbour '%s' is not listed (any more)" % neighbour_name)


## Whether `pos` is far enough on the other side of the border to hand the player over.
func _past_border(pos: Vector2) -> bool:
	match side:
		"west": return pos.x >= border_x + Protocol.BORDER_MARGIN
		"east": return pos.x < border_x - Protocol.BORDER_MARGIN
	return false


## A spawn point on this cluster's side (or anywhere without a side).
func _spawn_point() -> Vector2:
	var y := randf_range(-140.0, 140.0)
	match side:
		"west": return Vector2(border_x - randf_range(60.0, 300.0), y)
		"east": return Vector2(border_x + randf_range(60.0, 300.0), y)
	return Vector2(randf_range(-250.0, 250.0), y)


func _hand_over(id: int) -> void:
	if moving.has(id):
		return
	var now := Time.get_ticks_msec()
	if neighbour_id == 0:
		if now - warned_no_neighbour > 5000:
			warned_no_neighbour = now
			print("demo cluster: a player crossed the border but '%s' is not known yet; it stays here" % neighbour_name)
		return
	if now - int(last_try.get(id, -100000)) < 1000:
		return
	last_try[id] = now
	var p: Dictionary = players[id]
	# Reliable messages queued before transfer_player reach the client before its redirect.
	cluster.send_var_to(id, Protocol.HANDOFF, {"to": neighbour_name, "pos": p["pos"]})
	var state := Protocol.encode_state(p["name"], p["pos"], p["color"], cluster.server_name)
	var err := cluster.transfer_player(id, neighbour_id, state)
	if err == OK:
		moving[id] = true
		print("demo cluster: handing %s (id %d) over to '%s' at %s" % [p["name"], id, neighbour_name, p["pos"]])


func _on_transfer_failed(id: int, reason: int, message: String) -> void:
	moving.erase(id)
	print("demo cluster: handing %d over failed: %s %s" % [id, SustenetClient.reason_text(reason), message])
	# The neighbour may have restarted with a new id: look it up again now.
	neighbour_id = 0 if lookup != null else neighbour_id
	lookup_timer = 0.0


# --- cluster signals ----------------------------------------------------------------

func _on_started(tcp_port: int, udp_port: int) -> void:
	print("demo cluster: started, tcp %d udp %d" % [tcp_port, udp_port])


func _on_stopped() -> void:
	print("demo cluster: stopped")


func _on_registered(cluster_id: int) -> void:
	# The test harness greps this line for the cluster id.
	print("demo cluster: registered with the master, cluster id=%d" % cluster_id)
	lookup_timer = 0.0


func _on_master_lost(message: String) -> void:
	print("demo cluster: lost the master (%s); players stay connected" % message)


func _on_player_connected(id: int, data: PackedByteArray) -> void:
	var player_name := ""
	var pos := Vector2.ZERO
	var color := Protocol.color_for(id)
	var from := ""
	var st = SustenetClient.decode_var(data) if Protocol.is_state(data) else null
	if st is Dictionary and st.get("pos") is Vector2 and st["pos"].is_finite():
		# Handed over by the neighbour: the state it passed to transfer_player.
		player_name = str(st.get("name", ""))
		pos = st["pos"]
		if st.get("color") is Color:
			color = st["color"]
		from = str(st.get("from", "?"))
		portal.on_arrived(id, st)
	else:
		player_name = data.get_string_from_utf8()
		pos = _spawn_point()
	if player_name.is_empty():
		player_name = "player %d" % (id % 10000)
	# Tell the newcomer who is here, then tell everybody else about the newcomer.
	var welcome := {"id": id, "players": players.duplicate(true)}
	if side != "":
		welcome["region"] = {"cluster": cluster.server_name, "side": side, "border_x": border_x,
				"neighbour": neighbour_name}
	if from.is_empty() or portal.role != "":
		# Through the portal or the dungeon's exit, the player lands somewhere new.
		welcome["spawn"] = pos
	portal.welcome_extra(welcome)
	cluster.send_var_to(id, Protocol.WELCOME, welcome)
	players[id] = {"name": player_name, "pos": pos, "color": color}
	cluster.set_player_position(id, pos)
	cluster.broadcast_except(id, Protocol.PLAYER_JOINED,
			var_to_bytes({"id": id, "name": player_name, "pos": pos, "color": color}), true)
	if from.is_empty():
		print("demo cluster: %s joined (id %d), %d player(s)" % [player_name, id, players.size()])
	else:
		print("demo cluster: %s arrived from '%s' at %s (id %d), %d player(s)" % [
			player_name, from, pos, id, players.size()])


func _on_player_disconnected(id: int, reason: int) -> void:
	var p: Dictionary = players.get(id, {})
	players.erase(id)
	moving.erase(id)
	last_try.erase(id)
	portal.on_left(id)
	cluster.broadcast(Protocol.PLAYER_LEFT, Protocol.encode_id(id))
	if reason == SustenetClient.REASON_REDIRECTED:
		print("demo cluster: %s moved on to '%s', %d player(s)" % [p.get("name", str(id)), neighbour_name, players.size()])
	else:
		print("demo cluster: %s left (%s), %d player(s)" % [
			p.get("name", str(id)), SustenetClient.reason_text(reason), players.size()])


func _on_packet_received(id: int, command: int, data: PackedByteArray, reliable: bool) -> void:
	if moving.has(id) and command != Protocol.POS:
		# Sends to a player being handed over are refused; what it sent still arrives here.
		return
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
			cluster.set_player_position(id, pos)
			if moving.has(id):
				return
			cluster.broadcast_except(id, Protocol.POS, Protocol.encode_player_pos(id, pos), false)
			if _past_border(pos):
				_hand_over(id)
			elif portal.on_pos(id, pos):
				moving[id] = true
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
