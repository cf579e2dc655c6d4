## Server meshing in the engine: a player walks over a cluster border and arrives on the other
## cluster with its state. Two demo clusters (border_cluster_node.gd: the demo cluster scene
## with --side=west / --side=east) run in their own Godot processes on a real master:
##   godot --headless --path demo_project -s res://tests/test_border.gd -- \
##     --master-port=P --master-key=BASE64 --report-dir=DIR
## The walker joins "West Cluster", then walks east a few units per step, sending its position
## (unreliable) and 5 numbered reliable ECHO messages per step. Once past the border the west
## cluster hands it over (transfer_player with its state). Checks:
## - the west's HANDOFF notice (reliable, queued just before the transfer) arrives before
##   `redirected`; then `redirected` and `cluster_joined` name the east cluster, with the same
##   player id; get_last_redirect_pause_ms() is set; the east's WELCOME follows;
## - the east's player_connected got the state (the east echoes it back: STATE_SEEN);
## - reliable messages across the move: the numbers the west received (its report file) followed
##   by those the east echoed are exactly 1..N (none lost, none duplicated, order kept); the
##   echoes that came back before the redirect are a prefix of what the west received.
extends "res://tests/test_base.gd"

const Protocol = preload("res://common/protocol.gd")
const STATE_SEEN := 200
const STEP := 4.0
const PER_STEP := 5
const STEPS_AFTER := 20

var c: SustenetClient
var ids := {}           # cluster name -> id
var events := []        # [kind, ...] in arrival order
var joined := []        # [cluster name, cluster id, player id]
var redirected_yet := false
var echoes_before := []
var echoes_after := []
var state_seen = null
var pause_ms := -1.0
var x := -60.0
var seq := 0


func _initialize() -> void:
	begin("border", 40)
	c = SustenetClient.new()
	c.master_port = arg("master-port", 6256)
	c.master_public_key = arg("master-key", "")
	c.login_succeeded.connect(func(_id): c.request_clusters())
	c.clusters_received.connect(func(list):
		for info: SustenetClusterInfo in list:
			ids[info.cluster_name] = info.id)
	c.cluster_joined.connect(func(info, pid):
		events.append(["joined", info.cluster_name])
		joined.append([info.cluster_name, info.id, pid]))
	c.redirected.connect(func(info):
		events.append(["redirected", info.cluster_name])
		pause_ms = c.get_last_redirect_pause_ms()
		redirected_yet = true
		check(info.cluster_name == "East Cluster" and info.id == ids.get("East Cluster", -1),
				"redirected(info) names the east cluster (%s, id %d)" % [info.cluster_name, info.id]))
	c.packet_received.connect(_on_packet)
	c.disconnected.connect(func(r, m): events.append(["disconnected", SustenetClient.reason_text(r), m]))
	c.join_failed.connect(func(r, m): events.append(["join_failed", SustenetClient.reason_text(r), m]))
	c.error.connect(func(m): print("border: error: ", m))
	root.add_child(c)
	_run()


func _on_packet(command: int, data: PackedByteArray, reliable: bool) -> void:
	match command:
		Protocol.ECHO:
			if reliable and data.size() == 8:
				(echoes_after if redirected_yet else echoes_before).append(data.decode_s64(0))
		Protocol.HANDOFF:
			var h = SustenetClient.decode_var(data)
			events.append(["handoff", h.get("to", "?") if h is Dictionary else "?"])
		Protocol.WELCOME:
			var w = SustenetClient.decode_var(data)
			var r = w.get("region", {}) if w is Dictionary else {}
			events.append(["welcome", r.get("side", "?") if r is Dictionary else "?"])
		STATE_SEEN:
			state_seen = SustenetClient.decode_var(data)


func step() -> void:
	x += STEP
	c.send_unreliable(Protocol.POS, Protocol.encode_pos(Vector2(x, 10)))
	for i in PER_STEP:
		seq += 1
		var b := PackedByteArray()
		b.resize(8)
		b.encode_s64(0, seq)
		c.send(Protocol.ECHO, b)
	await create_timer(0.016).timeout


func _run() -> void:
	check(c.login("walker", "") == OK, "login() OK")
	var listed := func(): return ids.has("West Cluster") and ids.has("East Cluster")
	var t0 := Time.get_ticks_msec()
	while not listed.call() and Time.get_ticks_msec() - t0 < 10000:
		await wait_seconds(0.5)
		c.request_clusters()
	if not check(listed.call(), "the master lists 'West Cluster' and 'East Cluster' (%s)" % [ids]):
		await finish()
		return
	c.join_cluster(ids["West Cluster"])
	if not check(await wait_until(func(): return joined.size() == 1 and events.has(["welcome", "west"]), 10),
			"joined the west cluster and got its WELCOME with region side west (%s)" % [events]):
		await finish()
		return
	check(joined[0][0] == "West Cluster" and joined[0][1] == ids["West Cluster"], "cluster_joined names the west cluster")
	var pid: int = joined[0][2]

	# Walk east until the east cluster has us, then a little further.
	var deadline := Time.get_ticks_msec() + 15000
	while joined.size() < 2 and Time.get_ticks_msec() < deadline and x < 600:
		await step()
	var crossed_at := x
	if not check(joined.size() == 2, "arrived on another cluster after walking to x=%.0f (events %s)" % [x, events]):
		await finish()
		return
	for i in STEPS_AFTER:
		await step()
	var last := seq
	print("border: walked to x=%.0f (crossed by x=%.0f), sent %d reliable messages, pause %.2f ms" % [x, crossed_at, last, pause_ms])

	# Signals on the client, in order.
	check(joined[1][0] == "East Cluster" and joined[1][1] == ids["East Cluster"],
			"cluster_joined names the east cluster (%s)" % [joined[1]])
	check(joined[1][2] == pid, "same player id on both clusters (%d, %d)" % [pid, joined[1][2]])
	var kinds := events.map(func(e): return e[0])
	var h := kinds.find("handoff")
	var r := kinds.find("redirected")
	var j := kinds.rfind("joined")
	check(h >= 0 and r > h and j == r + 1,
			"HANDOFF (reliable, before transfer_player) then redirected then cluster_joined: %s" % [events])
	check(kinds.count("redirected") == 1 and not kinds.has("disconnected") and not kinds.has("join_failed"),
			"one redirect, no disconnect on the way (%s)" % [events])
	check(events.has(["handoff", "East Cluster"]), "HANDOFF names 'East Cluster'")
	check(pause_ms > 0.0 and pause_ms < 5000.0 and c.get_last_redirect_pause_ms() == pause_ms,
			"get_last_redirect_pause_ms() is set when redirected fires (%.2f ms)" % pause_ms)
	check(await wait_until(func(): return events.has(["welcome", "east"]), 5), "the east's WELCOME (region side east)")
	check(c.get_cluster() != null and c.get_cluster().cluster_name == "East Cluster", "get_cluster() is the east cluster")

	# The east got the state in player_connected (it sent it back).
	if check(await wait_until(func(): return state_seen != null, 5) and state_seen is Dictionary,
			"the east cluster's player_connected carried the state (%s)" % [state_seen]):
		check(state_seen.get("name") == "walker" and state_seen.get("from") == "West Cluster",
				"state: name 'walker', from 'West Cluster'")
		var p = state_seen.get("pos")
		check(p is Vector2 and p.x >= Protocol.BORDER_MARGIN and p.x <= crossed_at and p.y == 10.0,
				"state: the position where it crossed (%s, crossed by x=%.0f)" % [p, crossed_at])
		check(state_seen.get("color") == Protocol.color_for(pid), "state: the walker's colour")

	# Reliable messages across the move.
	check(await wait_until(func(): return not echoes_after.is_empty() and echoes_after.back() == last, 10),
			"the east echoed up to the last message (%d)" % last)
	var report := {}
	var path: String = String(arg("report-dir", "")).path_join("west_seqs.json")
	if check(await wait_until(func(): return FileAccess.file_exists(path), 10), "the west wrote its report %s" % path):
		var parsed = JSON.parse_string(FileAccess.get_file_as_string(path))
		if parsed is Dictionary:
			report = parsed
	var west := []
	for s in report.get("seqs", []):
		west.append(int(s))
	check(int(report.get("reason", -1)) == SustenetClient.REASON_REDIRECTED and report.get("player") == str(pid),
			"the west saw this player leave with REASON_REDIRECTED (%s)" % [report.get("reason")])
	var all := []
	all.append_array(west)
	all.append_array(echoes_after)
	var expected := []
	for i in range(1, last + 1):
		expected.append(i)
	check(not west.is_empty() and not echoes_after.is_empty(), "both clusters got messages (west %d, east %d)" % [west.size(), echoes_after.size()])
	check(all == expected, "client -> cluster: west's %d + east's %d = 1..%d, none lost, none duplicated, in order" % [
		west.size(), echoes_after.size(), last])
	check(echoes_before == west.slice(0, echoes_before.size()),
			"cluster -> client: the %d echoes from the west before the redirect are in order and a prefix of what it got" % echoes_before.size())
	print("border: west got %d (echoed %d before the redirect), east got %d" % [west.size(), echoes_before.size(), echoes_after.size()])
	c.disconnect_from_server()
	await wait_seconds(0.3)
	await finish()
