## The demo's game client: log in to a Sustenet master, pick a cluster, walk around with
## the arrow keys, see the other players and chat. With two demo clusters side by side
## (cluster.gd --side=west / --side=east) the play area shows the border between them;
## walking over it hands the player to the other cluster (the status line shows the move).
##
## Positions are world coordinates: the origin is the centre of the play area.
##
## Defaults for the master come from the project settings `sustenet/network/*` (added by the
## Sustenet editor plugin), then from `../.sustenet/client.toml` (written by `sustenet up`
## when it runs in the repository's root folder), then from user arguments after `--`:
##   --master=HOST:PORT --key=BASE64 --user=NAME
##   --auto               log in and join the best cluster right away
##   --autopilot          walk in a circle (for screenshots)
##   --patrol             walk east and west across the play area (over a cluster border)
##   --say=TEXT           say this in the chat once another player is there
##   --screenshot=FILE    save a PNG of the window once another player is visible, then quit
##   --quit-after=SECONDS quit after this long
extends Control

const Protocol = preload("res://common/protocol.gd")

const AVATAR_SIZE := 28.0
const SPEED := 240.0
const SEND_INTERVAL := 0.05  # 20 Hz position updates, unreliable

@onready var client: SustenetClient = $SustenetClient
@onready var address_edit: LineEdit = %AddressEdit
@onready var port_spin: SpinBox = %PortSpin
@onready var key_edit: LineEdit = %KeyEdit
@onready var user_edit: LineEdit = %UserEdit
@onready var login_button: Button = %LoginButton
@onready var cluster_list: ItemList = %ClusterList
@onready var join_button: Button = %JoinButton
@onready var join_best_button: Button = %JoinBestButton
@onready var refresh_button: Button = %RefreshButton
@onready var leave_button: Button = %LeaveButton
@onready var game_area: Panel = %GameArea
@onready var hint_label: Label = %HintLabel
@onready var chat_log: RichTextLabel = %ChatLog
@onready var chat_edit: LineEdit = %ChatEdit
@onready var status_label: Label = %StatusLabel

var args := {}
var logged_in := false
var in_game := false
var my_id := 0
var my_pos := Vector2(-150, -60)
var my_avatar: Control = null
## player id -> {"node": Control, "target": Vector2, "name": String}
var others := {}
var cluster_name := ""
var last_reason := "none"
var send_timer := 0.0
var status_timer := 0.0
var refresh_timer := 0.0
var autopilot_t := 0.0
var shot_frames := -1
var said := false
var patrol_dir := 1.0
## The cluster's part of the world, from WELCOME: {"cluster", "side", "border_x", "neighbour"}.
var region := {}
var border_line: ColorRect = null
var side_labels: Array[Label] = []
## How many times this client was moved to another cluster (the `redirected` signal).
var moves := 0
## Positions are sent once the cluster's WELCOME (with the spawn point) is in, so a fresh
## join does not report the old position to a cluster that serves another part of the world;
## after a move between clusters the position carries on (or after 1 s, for clusters without
## a WELCOME).
var send_pos_after := 0
var just_redirected := false
## The world's portal or the dungeon's exit, from WELCOME ("portal" / "dungeon"), drawn as a square.
var portal_marker: ColorRect = null


func _ready() -> void:
	args = Protocol.user_args()
	_load_defaults()
	client.connected.connect(_on_connected)
	client.login_succeeded.connect(_on_login_succeeded)
	client.login_failed.connect(_on_login_failed)
	client.clusters_received.connect(_on_clusters_received)
	client.cluster_joined.connect(_on_cluster_joined)
	client.join_failed.connect(_on_join_failed)
	client.packet_received.connect(_on_packet_received)
	client.redirected.connect(_on_redirected)
	client.disconnected.connect(_on_disconnected)
	client.master_disconnected.connect(_on_master_disconnected)
	client.error.connect(_on_error)
	login_button.pressed.connect(_on_login_pressed)
	join_button.pressed.connect(_on_join_pressed)
	join_best_button.pressed.connect(_on_join_best_pressed)
	refresh_button.pressed.connect(func(): client.request_clusters())
	leave_button.pressed.connect(_on_leave_pressed)
	chat_edit.text_submitted.connect(_on_chat_submitted)
	cluster_list.item_activated.connect(func(_i): _on_join_pressed())
	_update_buttons()
	_log("[i]Sustenet demo. Log in, pick a cluster, move with the arrow keys.[/i]")
	if args.has("quit-after"):
		get_tree().create_timer(float(args["quit-after"])).timeout.connect(_quit)
	if args.has("auto") or args.has("screenshot"):
		_on_login_pressed()


func _load_defaults() -> void:
	var address: String = ProjectSettings.get_setting("sustenet/network/master_address", "127.0.0.1")
	var port: int = ProjectSettings.get_setting("sustenet/network/master_port", 6256)
	var key: String = ProjectSettings.get_setting("sustenet/network/master_public_key", "")
	# `sustenet up` run in the repository root writes .sustenet/client.toml there.
	var toml := ProjectSettings.globalize_path("res://").path_join("../.sustenet/client.toml")
	if FileAccess.file_exists(toml):
		var text := FileAccess.get_file_as_string(toml)
		for line in text.split("\n"):
			var kv := line.split("=", true, 1)
			if kv.size() != 2:
				continue
			var k := kv[0].strip_edges()
			var v := kv[1].strip_edges().trim_prefix("\"").trim_suffix("\"")
			if k == "master" and v.contains(":"):
				address = v.rsplit(":", true, 1)[0]
				port = int(v.rsplit(":", true, 1)[1])
			elif k == "public_key":
				key = v
	if args.has("master"):
		var m: String = args["master"]
		if m.contains(":"):
			address = m.rsplit(":", true, 1)[0]
			port = int(m.rsplit(":", true, 1)[1])
		else:
			address = m
	if args.has("key"):
		key = args["key"]
	address_edit.text = address
	port_spin.value = port
	key_edit.text = key
	user_edit.text = args.get("user", "player%d" % (randi() % 1000))


func _quit() -> void:
	client.disconnect_from_server()
	get_tree().quit(0)


# --- UI actions ---------------------------------------------------------------------

func _on_login_pressed() -> void:
	client.master_address = address_edit.text.strip_edges()
	client.master_port = int(port_spin.value)
	client.master_public_key = key_edit.text.strip_edges()
	if client.master_public_key.is_empty():
		_log("[color=orange]Enter the master's public key (printed by `sustenet up` or `sustenet keygen --master`).[/color]")
		return
	var err := client.login(user_edit.text.strip_edges(), "")
	if err != OK:
		_log("[color=red]login: %s (see the Output panel)[/color]" % error_string(err))
	else:
		_log("connecting to %s:%d ..." % [client.master_address, client.master_port])


func _on_join_pressed() -> void:
	var sel := cluster_list.get_selected_items()
	if sel.is_empty():
		_log("pick a cluster in the list first (or use Join best)")
		return
	var id: int = cluster_list.get_item_metadata(sel[0])
	client.join_cluster(id)


func _on_join_best_pressed() -> void:
	client.join_best_cluster()


func _on_leave_pressed() -> void:
	client.leave()


func _on_chat_submitted(text: String) -> void:
	text = text.strip_edges()
	chat_edit.clear()
	get_viewport().gui_release_focus()
	if text.is_empty():
		return
	if not in_game:
		_log("join a cluster to chat")
		return
	client.send(Protocol.CHAT, text.to_utf8_buffer())


# --- Sustenet signals ---------------------------------------------------------------

func _on_connected() -> void:
	_log("connected to the master (its public key checked)")


func _on_login_succeeded(client_id: int) -> void:
	logged_in = true
	_log("logged in as [b]%s[/b] (client id %d)" % [user_edit.text, client_id])
	client.request_clusters()
	if args.has("auto") or args.has("screenshot"):
		client.join_best_cluster()
	_update_buttons()


func _on_login_failed(message: String) -> void:
	_log("[color=red]login failed: %s[/color]" % message)


func _on_clusters_received(clusters: Array) -> void:
	cluster_list.clear()
	for info: SustenetClusterInfo in clusters:
		var cap := "∞" if info.capacity == 0 else str(info.capacity)
		var text := "%s   %d / %s" % [info.cluster_name, info.players, cap]
		if info.locked:
			text += "  (full)"
		var i := cluster_list.add_item(text)
		cluster_list.set_item_metadata(i, info.id)
		cluster_list.set_item_tooltip(i, "%s:%d (udp %d), id %d" % [info.address, info.tcp_port, info.udp_port, info.id])
		if info.locked:
			cluster_list.set_item_disabled(i, true)
	if clusters.is_empty():
		cluster_list.add_item("(no cluster is registered yet)")
		cluster_list.set_item_disabled(0, true)
		cluster_list.set_item_metadata(0, 0)


func _on_cluster_joined(info: SustenetClusterInfo, player_id: int) -> void:
	in_game = true
	my_id = player_id
	cluster_name = info.cluster_name
	_log("joined [b]%s[/b] as player %d" % [info.cluster_name, player_id])
	print("demo client: joined %s as player %d" % [info.cluster_name, player_id])
	_clear_others()
	region = {}
	send_pos_after = 0 if just_redirected else Time.get_ticks_msec() + 1000
	just_redirected = false
	if my_avatar == null:
		my_avatar = _make_avatar(user_edit.text + " (you)", Protocol.color_for(player_id))
	my_avatar.visible = true
	hint_label.visible = false
	get_viewport().gui_release_focus()
	_update_buttons()


func _on_join_failed(reason: int, message: String) -> void:
	_log("[color=red]join failed: %s (%s)[/color]" % [SustenetClient.reason_text(reason), message])


func _on_packet_received(command: int, data: PackedByteArray, _reliable: bool) -> void:
	match command:
		Protocol.POS:
			if data.size() == 16:
				var id := data.decode_s64(0)
				var pos := Vector2(data.decode_float(8), data.decode_float(12))
				if id != my_id:
					_other(id, "").target = pos
		Protocol.WELCOME:
			var w = SustenetClient.decode_var(data)
			if w is Dictionary and w.get("players") is Dictionary:
				for id in w["players"]:
					var p = w["players"][id]
					if p is Dictionary:
						var o := _other(int(id), str(p.get("name", "")), p.get("color"))
						o.target = p.get("pos", Vector2.ZERO)
						o.node.position = _to_screen(o.target) - Vector2.ONE * AVATAR_SIZE / 2
			if w is Dictionary and w.get("spawn") is Vector2:
				my_pos = w["spawn"]
			send_pos_after = 0
			if w is Dictionary and w.get("region") is Dictionary:
				region = w["region"]
				_update_border()
			if w is Dictionary:
				_show_portal(w)
		Protocol.PORTAL:
			var pm = SustenetClient.decode_var(data)
			if pm is Dictionary:
				match pm.get("state"):
					"opening": _log("[i]the portal opens a dungeon for your party...[/i]")
					"leaving": _log("[i]back to the world[/i]")
					_: _log("[color=red]the portal failed: %s[/color]" % str(pm.get("reason", "")).xml_escape())
		Protocol.PLAYER_JOINED:
			var j = SustenetClient.decode_var(data)
			if j is Dictionary and j.has("id"):
				var o := _other(int(j["id"]), str(j.get("name", "")), j.get("color"))
				o.target = j.get("pos", Vector2.ZERO)
				_log("%s joined" % o.name)
		Protocol.HANDOFF:
			var h = SustenetClient.decode_var(data)
			if h is Dictionary:
				_log("[i]crossing the border: %s takes over[/i]" % str(h.get("to", "?")).xml_escape())
		Protocol.PLAYER_LEFT:
			if data.size() == 8:
				var id := data.decode_s64(0)
				if others.has(id):
					_log("%s left" % others[id].name)
					others[id].node.queue_free()
					others.erase(id)
		Protocol.CHAT:
			_log(data.get_string_from_utf8().xml_escape())
		_:
			pass


func _on_redirected(info: SustenetClusterInfo) -> void:
	# cluster_joined follows; the connection paused for get_last_redirect_pause_ms().
	moves += 1
	just_redirected = true
	_log("moved to [b]%s[/b] (paused %.1f ms)" % [info.cluster_name, client.get_last_redirect_pause_ms()])
	print("demo client: moved to %s at %s (paused %.1f ms)" % [info.cluster_name, my_pos, client.get_last_redirect_pause_ms()])
	cluster_name = info.cluster_name
	_clear_others()


func _on_disconnected(reason: int, message: String) -> void:
	in_game = false
	last_reason = SustenetClient.reason_text(reason)
	if not message.is_empty():
		last_reason += ": " + message
	_log("[color=orange]left the cluster: %s[/color]" % last_reason.xml_escape())
	_clear_others()
	if my_avatar:
		my_avatar.visible = false
	hint_label.visible = true
	cluster_name = ""
	if logged_in:
		client.request_clusters()
	_update_buttons()


func _on_master_disconnected(reason: int, message: String) -> void:
	logged_in = false
	_log("[color=orange]master connection closed: %s %s[/color]" % [SustenetClient.reason_text(reason), message.xml_escape()])
	_update_buttons()


func _on_error(message: String) -> void:
	_log("[color=red]%s[/color]" % message.xml_escape())


# --- game ----------------------------------------------------------------------------

func _process(delta: float) -> void:
	if in_game and my_avatar:
		var dir := Vector2.ZERO
		if not chat_edit.has_focus():
			dir = Input.get_vector("ui_left", "ui_right", "ui_up", "ui_down")
		if args.has("autopilot") or args.has("screenshot"):
			autopilot_t += delta
			var center := Vector2(-120 if my_id % 2 == 0 else 120, 0)
			var target := center + Vector2(cos(autopilot_t), sin(autopilot_t)) * 90
			dir = (target - my_pos).limit_length(1.0)
		elif args.has("patrol"):
			# Walk to one edge, then to the other: over the border and back.
			var edge := Protocol.WORLD_HALF.x
			if my_pos.x > edge * 0.8:
				patrol_dir = -1.0
			elif my_pos.x < -edge * 0.8:
				patrol_dir = 1.0
			dir = Vector2(patrol_dir * 0.6, 0)
		my_pos += dir * SPEED * delta
		my_pos = my_pos.clamp(-Protocol.WORLD_HALF, Protocol.WORLD_HALF)
		my_avatar.position = _to_screen(my_pos) - Vector2.ONE * AVATAR_SIZE / 2
		send_timer += delta
		if send_timer >= SEND_INTERVAL and Time.get_ticks_msec() >= send_pos_after:
			send_timer = 0.0
			client.send_unreliable(Protocol.POS, Protocol.encode_pos(my_pos))
	for id in others:
		var o: Dictionary = others[id]
		var goal: Vector2 = _to_screen(o.target) - Vector2.ONE * AVATAR_SIZE / 2
		o.node.position = o.node.position.lerp(goal, minf(1.0, delta * 12.0))
	status_timer += delta
	if status_timer >= 0.25:
		status_timer = 0.0
		_update_status()
		_update_border()
	if logged_in and not in_game:
		refresh_timer += delta
		if refresh_timer >= 3.0:
			refresh_timer = 0.0
			client.request_clusters()
	if args.has("say") and not said and in_game and not others.is_empty():
		# Say it once somebody is there to read it.
		said = true
		client.send(Protocol.CHAT, String(args["say"]).to_utf8_buffer())
	if args.has("screenshot"):
		_screenshot_step()


func _screenshot_step() -> void:
	# Wait until another player is visible and has moved a bit, then save the window.
	if shot_frames < 0:
		if in_game and not others.is_empty():
			shot_frames = 90
		return
	shot_frames -= 1
	if shot_frames == 0:
		var path: String = args["screenshot"]
		var img := get_viewport().get_texture().get_image()
		var err := img.save_png(path)
		print("demo client: screenshot %s -> %s" % [path, error_string(err)])
		_quit()


func _update_status() -> void:
	var parts := []
	if in_game:
		if region.is_empty():
			parts.append("cluster: %s" % cluster_name)
		else:
			parts.append("cluster: %s (%s side)" % [cluster_name, region.get("side", "?")])
		parts.append("ping: %.1f ms" % client.get_reliable_rtt_ms())
		parts.append("players here: %d" % (others.size() + 1))
		if moves > 0:
			parts.append("moved %dx, last pause %.1f ms" % [moves, client.get_last_redirect_pause_ms()])
	elif logged_in:
		parts.append("logged in, not in a cluster")
	else:
		parts.append("not connected")
	parts.append("last disconnect: %s" % last_reason)
	status_label.text = "  |  ".join(parts)


func _update_buttons() -> void:
	login_button.disabled = logged_in
	join_button.disabled = not logged_in or in_game
	join_best_button.disabled = not logged_in or in_game
	refresh_button.disabled = not logged_in
	leave_button.disabled = not in_game
	chat_edit.editable = in_game


## World coordinates (origin in the middle of the play area) to the play area's.
func _to_screen(world: Vector2) -> Vector2:
	return world + game_area.size / 2


## Shows the border between the two clusters (from WELCOME's "region") and their names.
func _update_border() -> void:
	if region.is_empty() or not in_game:
		if border_line:
			border_line.visible = false
			for l in side_labels:
				l.visible = false
		return
	if border_line == null:
		border_line = _overlay(Color(1, 1, 1, 0.35))
		for i in 2:
			var l := Label.new()
			l.add_theme_font_size_override("font_size", 13)
			l.modulate = Color(1, 1, 1, 0.6)
			game_area.add_child(l)
			side_labels.append(l)
	var x := _to_screen(Vector2(float(region.get("border_x", 0.0)), 0)).x
	border_line.position = Vector2(x - 1, 0)
	border_line.size = Vector2(2, game_area.size.y)
	border_line.visible = true
	var here := str(region.get("cluster", cluster_name))
	var there := str(region.get("neighbour", ""))
	var west_name := here if region.get("side") == "west" else there
	var east_name := there if region.get("side") == "west" else here
	side_labels[0].text = "<- " + west_name
	side_labels[0].position = Vector2(x - 12 - side_labels[0].get_minimum_size().x, 6)
	side_labels[1].text = east_name + " ->"
	side_labels[1].position = Vector2(x + 12, 6)
	for l in side_labels:
		l.visible = true


func _make_avatar(label: String, color: Color) -> Control:
	var r := ColorRect.new()
	r.size = Vector2.ONE * AVATAR_SIZE
	r.color = color
	r.mouse_filter = Control.MOUSE_FILTER_IGNORE
	var l := Label.new()
	l.text = label
	l.position = Vector2(-20, -24)
	l.add_theme_font_size_override("font_size", 13)
	r.add_child(l)
	game_area.add_child(r)
	return r


func _other(id: int, player_name: String, color: Variant = null) -> Dictionary:
	if not others.has(id):
		if player_name.is_empty():
			player_name = "player %d" % (id % 10000)
		var node := _make_avatar(player_name, color if color is Color else Protocol.color_for(id))
		others[id] = {"node": node, "target": Vector2(-100, -100), "name": player_name}
	return others[id]


func _clear_others() -> void:
	for id in others:
		others[id].node.queue_free()
	others.clear()


func _log(bbcode: String) -> void:
	chat_log.append_text(bbcode + "\n")


## Draws the world's portal or the dungeon's exit from a WELCOME (hidden when it has neither).
func _show_portal(welcome: Dictionary) -> void:
	var spot = welcome.get("portal", welcome.get("dungeon"))
	if not (spot is Dictionary and spot.get("pos", spot.get("exit")) is Vector2):
		if portal_marker:
			portal_marker.visible = false
		return
	if portal_marker == null:
		portal_marker = _overlay(Color(0.55, 0.35, 1.0, 0.45))
		var l := Label.new()
		l.add_theme_font_size_override("font_size", 13)
		l.position = Vector2(0, -20)
		portal_marker.add_child(l)
	var r := float(spot.get("radius", Protocol.PORTAL_RADIUS))
	var at: Vector2 = spot.get("pos", spot.get("exit"))
	portal_marker.size = Vector2.ONE * r * 2
	portal_marker.position = _to_screen(at) - Vector2.ONE * r
	(portal_marker.get_child(0) as Label).text = "portal" if welcome.has("portal") else "exit"
	portal_marker.visible = true


## A rectangle drawn over the play area that lets the mouse through.
func _overlay(color: Color) -> ColorRect:
	var r := ColorRect.new()
	r.color = color
	r.mouse_filter = Control.MOUSE_FILTER_IGNORE
	game_area.add_child(r)
	return r
