## SustenetWebClient (pure GDScript over WebSocketPeer, wss with the development
## certificate) against a real `sustenet up`, beside a native SustenetClient:
##   godot --headless --path demo_project -s res://tests/test_web_client.gd -- \
##     --websocket-url=wss://127.0.0.1:P --cert=PATH --master-port=P --master-key=BASE64
## Login, the web cluster list, a join, reliable and unreliable echoes, a web and a native
## player in the same fragment seeing each other's state and chat, a handoff to the other
## cluster (command 4 of up's plugin), and a cut link that reconnects with nothing lost.
## Also the helper: SustenetNet.create_client picks the native client here (not web).
extends "res://tests/test_base.gd"

const ECHO := 1
const CHAT := 2
const MOVE_ME := 4
const POS := 10
const STATE := 11

var web: SustenetWebClient
var native: Node
var w := {"id": 0, "clusters": [], "joined": null, "player": 0, "errors": [], "packets": [],
		"redirected": null, "reconnecting": 0, "reconnected": 0, "disc": []}
var n := {"id": 0, "player": 0, "errors": [], "packets": []}


func _initialize() -> void:
	begin("web_client", 120)
	check(not SustenetNet.uses_web_client(), "SustenetNet picks the native client on desktop")
	var probe := SustenetNet.create_client({"websocket_url": "wss://unused"})
	check(probe.get_class() == "SustenetClient", "so create_client makes a SustenetClient here")
	probe.free()
	web = SustenetWebClient.new()
	web.master_url = arg("websocket-url", "")
	web.trusted_certificate = arg("cert", "")
	web.heartbeat_sec = 0.2
	web.login_succeeded.connect(func(id): w.id = id)
	web.login_failed.connect(func(m): w.errors.append("login_failed " + m))
	web.clusters_received.connect(func(list): w.clusters = list)
	web.cluster_joined.connect(func(info, pid): w.joined = info; w.player = pid)
	web.join_failed.connect(func(r, m): w.errors.append("join_failed %d %s" % [r, m]))
	web.packet_received.connect(func(c, d, r): w.packets.append([c, d, r]))
	web.redirected.connect(func(info): w.redirected = info)
	web.reconnecting.connect(func(_r, _m): w.reconnecting += 1)
	web.reconnected.connect(func(_ms): w.reconnected += 1)
	web.disconnected.connect(func(r, m): w.disc = [r, m])
	web.error.connect(func(m): w.errors.append(m))
	root.add_child(web)
	native = SustenetNet.create_client({"master_address": "127.0.0.1",
			"master_port": arg("master-port", 6256), "master_public_key": arg("master-key", "")})
	native.login_succeeded.connect(func(id): n.id = id)
	native.cluster_joined.connect(func(_info, pid): n.player = pid)
	native.join_failed.connect(func(r, m): n.errors.append("join_failed %d %s" % [r, m]))
	native.packet_received.connect(func(c, d, r): n.packets.append([c, d, r]))
	native.error.connect(func(m): n.errors.append(m))
	root.add_child(native)
	_run()


func _has(list: Array, cmd: int, data: PackedByteArray, reliable: bool) -> bool:
	for p in list:
		if p[0] == cmd and p[1] == data and p[2] == reliable:
			return true
	return false


func _var_echoed() -> bool:
	for p in w.packets:
		if p[0] == ECHO and p[2] and p[1] == var_to_bytes({"hp": 3}):
			var v: Variant = SustenetWebClient.decode_var(p[1])
			return v is Dictionary and v.get("hp") == 3
	return false


## A STATE packet about `subject` (the payload starts with its id, u64 LE).
func _saw(list: Array, subject: int) -> bool:
	for p in list:
		if p[0] == STATE and p[1].size() >= 8 and p[1].decode_s64(0) == subject:
			return true
	return false


func _stop(why: String) -> void:
	check(false, why)
	await finish()


func _run() -> void:
	check(web.login("web_player", "") == OK, "login() returned OK")
	if not await wait_until(func(): return w.id != 0 or not w.errors.is_empty(), 15) or w.id == 0:
		await _stop("login_succeeded over wss (errors: %s)" % [w.errors])
		return
	check(true, "login_succeeded over wss, client id %d" % w.id)
	web.request_clusters()
	var deadline := Time.get_ticks_msec() + 15000
	while w.clusters.size() < 2 and Time.get_ticks_msec() < deadline:
		await wait_seconds(0.2)
		web.request_clusters()
	if not check(w.clusters.size() == 2, "the web list has up's two clusters (%d)" % w.clusters.size()):
		await finish()
		return
	var a: SustenetWebClusterInfo = w.clusters[0]
	var b: SustenetWebClusterInfo = w.clusters[1]
	check(a.udp_port == 1 and b.udp_port == 1 and a.url().begins_with("wss://"), "both clusters speak wss (%s)" % a.url())

	web.join_cluster(a.id)
	if not await wait_until(func(): return w.player != 0 or not w.errors.is_empty(), 15) or w.player == 0:
		await _stop("cluster_joined (errors: %s)" % [w.errors])
		return
	check(w.player == w.id and w.joined.id == a.id, "joined %s as player %d" % [a.cluster_name, w.player])
	check(web.is_in_cluster() and web.get_cluster().id == a.id, "is_in_cluster() and get_cluster()")

	var hello := "hello over wss".to_utf8_buffer()
	web.send(ECHO, hello)
	check(await wait_until(func(): return _has(w.packets, ECHO, hello, true), 10), "reliable echo")
	var fast := "fast".to_utf8_buffer()
	var got_fast := false
	deadline = Time.get_ticks_msec() + 10000
	while not got_fast and Time.get_ticks_msec() < deadline:
		web.send_unreliable(ECHO, fast)
		got_fast = await wait_until(func(): return _has(w.packets, ECHO, fast, false), 0.2)
	check(got_fast, "unreliable echo")
	check(web.send_var(ECHO, {"hp": 3}) == OK, "send_var() returned OK")
	check(await wait_until(_var_echoed, 10), "send_var round trip")

	# A native player on the same cluster: both stand at one spot and see each other.
	native.login("native_player", "")
	if not await wait_until(func(): return n.id != 0 or not n.errors.is_empty(), 15) or n.id == 0:
		await _stop("native login (errors: %s)" % [n.errors])
		return
	native.join_cluster(a.id)
	if not await wait_until(func(): return n.player != 0 or not n.errors.is_empty(), 15) or n.player == 0:
		await _stop("native join (errors: %s)" % [n.errors])
		return
	var pos := PackedByteArray()
	pos.resize(12)
	pos.encode_float(0, 5.0)
	pos.encode_float(4, 0.0)
	pos.encode_float(8, 5.0)
	deadline = Time.get_ticks_msec() + 15000
	while not (_saw(w.packets, n.id) and _saw(n.packets, w.id)) and Time.get_ticks_msec() < deadline:
		web.send_unreliable(POS, pos)
		native.send_unreliable(POS, pos)
		await wait_seconds(0.1)
	check(_saw(w.packets, n.id), "the web player sees the native player's state")
	check(_saw(n.packets, w.id), "the native player sees the web player's state")
	var chat := "from the browser".to_utf8_buffer()
	web.send(CHAT, chat)
	check(await wait_until(func(): return _has(n.packets, CHAT, chat, true), 10), "native hears the web player's chat")
	var back := "from native".to_utf8_buffer()
	native.send(CHAT, back)
	check(await wait_until(func(): return _has(w.packets, CHAT, back, true), 10), "the web player hears native chat")

	# A handoff to the other cluster, asked through up's plugin.
	var move := PackedByteArray()
	move.resize(8)
	move.encode_s64(0, b.id)
	var before: int = w.player
	w.player = 0
	web.send(MOVE_ME, move)
	if not await wait_until(func(): return w.player != 0 or not w.disc.is_empty(), 15) or w.player == 0:
		await _stop("cluster_joined after the move (disc %s, errors %s)" % [w.disc, w.errors])
		return
	check(w.redirected != null and w.redirected.id == b.id, "redirected to %s" % b.cluster_name)
	check(w.joined.id == b.id and w.player == before, "joined %s as the same player" % b.cluster_name)
	var moved := "after the move".to_utf8_buffer()
	web.send(ECHO, moved)
	check(await wait_until(func(): return _has(w.packets, ECHO, moved, true), 10), "echo on the new cluster")

	# A cut link: the client reconnects; what was sent while away arrives.
	web.simulate_connection_loss()
	check(web.is_reconnecting() and w.reconnecting == 1, "reconnecting after the cut")
	var away := "sent while away".to_utf8_buffer()
	check(web.send(ECHO, away) == OK, "send() while away is kept")
	check(await wait_until(func(): return w.reconnected == 1 or not w.disc.is_empty(), 15) and w.reconnected == 1,
			"reconnected (disc %s)" % [w.disc])
	check(await wait_until(func(): return _has(w.packets, ECHO, away, true), 10), "the message sent while away was echoed")
	check(w.disc.is_empty() and web.get_cluster().id == b.id, "still on %s, never disconnected" % b.cluster_name)

	web.disconnect_from_server()
	native.disconnect_from_server()
	await wait_seconds(0.3)
	await finish()
