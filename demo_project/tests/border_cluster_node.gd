## One of the two clusters of the `border` test: the demo cluster scene (cluster/cluster.tscn,
## which reads --side=west|east and the other settings from the command line itself) plus
## checks on its SustenetCluster's signals:
##   godot --headless --path demo_project -s res://tests/border_cluster_node.gd -- --side=west \
##     --master-port=P --master-key=BASE64 --key-name=N --key-path=FILE --port=P2 --report-dir=DIR
## Prints `BORDER_READY id=ID neighbour=ID` once registered and the neighbour is found by name.
## west: the walker joins fresh (player_connected carries its login name), walks east and is
##   handed over: player_disconnected fires with REASON_REDIRECTED. The ECHO sequence numbers
##   received from it go to DIR/west_seqs.json for the client to count.
## east: the walker arrives with the state the west passed to transfer_player (name, position,
##   colour, origin), which this process checks and sends back to the walker (command
##   STATE_SEEN); then the walker leaves (REASON_REQUESTED).
extends "res://tests/test_base.gd"

const Protocol = preload("res://common/protocol.gd")
## Test-only command, cluster -> walker: var_to_bytes of the decoded state.
const STATE_SEEN := 200

var demo: Node
var cl: SustenetCluster
var side := ""
var walker := 0
var walker_data := PackedByteArray()
var connects := 0
var left_reason := -1
var seqs: Array[int] = []


func _initialize() -> void:
	begin("border_cluster", 45)
	side = arg("side", "")
	test_name = "border_" + side
	demo = load("res://cluster/cluster.tscn").instantiate()
	root.add_child(demo)   # its _enter_tree applies the command line and connects its handlers
	cl = demo.get_node("SustenetCluster")
	# Connected after the demo's own handlers, so these run after them.
	cl.player_connected.connect(_on_player_connected)
	cl.player_disconnected.connect(func(id, reason):
		print("%s: player_disconnected %d %s" % [test_name, id, SustenetClient.reason_text(reason)])
		if id == walker:
			left_reason = reason)
	cl.packet_received.connect(_on_packet)
	cl.transfer_failed.connect(func(id, r, m): check(false, "transfer_failed(%d, %s, %s)" % [id, SustenetClient.reason_text(r), m]))
	_run()


func _run() -> void:
	await process_frame   # the demo scene enters the tree once the main loop runs
	check(side == "west" or side == "east", "--side is west or east (got '%s')" % side)
	check(demo.side == side, "the demo cluster took --side=%s" % side)
	if not check(await wait_until(func(): return cl.get_cluster_id() != 0 and demo.neighbour_id != 0, 25),
			"registered (id %d) and found the neighbour '%s' by name (id %d)" % [cl.get_cluster_id(), demo.neighbour_name, demo.neighbour_id]):
		await finish()
		return
	check(cl.server_name == ("West Cluster" if side == "west" else "East Cluster"), "named after its side: '%s'" % cl.server_name)
	# The harness waits for this line (from both clusters) before it starts the client.
	print("BORDER_READY id=%d neighbour=%d" % [cl.get_cluster_id(), demo.neighbour_id])
	if not check(await wait_until(func(): return walker != 0, 30), "the walker connected"):
		await finish()
		return
	if side == "west":
		check(walker_data.get_string_from_utf8() == "walker",
				"fresh join: player_connected data is the login name (got %s)" % [walker_data])
		if check(await wait_until(func(): return left_reason >= 0, 25), "player_disconnected fired for the walker"):
			check(left_reason == SustenetClient.REASON_REDIRECTED,
					"player_disconnected reason is REASON_REDIRECTED (15) (got %d: %s)" % [left_reason, SustenetClient.reason_text(left_reason)])
		check(not demo.players.has(walker) and not demo.moving.has(walker), "the demo forgot the walker")
		_check_seqs()
		_write_report()
	else:
		var st = SustenetClient.decode_var(walker_data) if Protocol.is_state(walker_data) else null
		if check(st is Dictionary, "player_connected data is a var_to_bytes Dictionary (the handover state): %s" % [st]):
			check(st.get("name") == "walker", "state name is 'walker' (%s)" % [st.get("name")])
			check(st.get("pos") is Vector2 and st["pos"].x >= demo.border_x + Protocol.BORDER_MARGIN,
					"state position is past the border (%s)" % [st.get("pos")])
			check(st.get("color") is Color and st["color"] == Protocol.color_for(walker),
					"state colour is the walker's (%s)" % [st.get("color")])
			check(st.get("from") == "West Cluster", "state says it came from 'West Cluster' (%s)" % [st.get("from")])
			check(demo.players.has(walker) and demo.players[walker]["pos"] == st["pos"] \
					and demo.players[walker]["name"] == "walker", "the demo placed the walker where the state says")
		check(connects == 1, "one player_connected for the walker (%d)" % connects)
		if check(await wait_until(func(): return left_reason >= 0, 25), "the walker left at the end"):
			check(left_reason == SustenetClient.REASON_REQUESTED,
					"it left with REASON_REQUESTED (got %s)" % SustenetClient.reason_text(left_reason))
		_check_seqs()
	await finish()


func _on_player_connected(id: int, data: PackedByteArray) -> void:
	print("%s: player_connected %d (%d bytes)" % [test_name, id, data.size()])
	connects += 1
	walker = id
	walker_data = data
	if side == "west" and connects == 1:
		# A state over 16 KiB is refused at once; nothing moves (the walker crosses later).
		var big := PackedByteArray()
		big.resize(16 * 1024 + 1)
		var err := cl.transfer_player(id, demo.neighbour_id, big)
		check(err == ERR_INVALID_PARAMETER,
				"transfer_player with a 16,385-byte state returns ERR_INVALID_PARAMETER (got %s)" % error_string(err))
	if side == "east":
		var st = SustenetClient.decode_var(data) if Protocol.is_state(data) else null
		check(cl.send_var_to(id, STATE_SEEN, st) == OK, "sent STATE_SEEN to the walker")


func _on_packet(id: int, command: int, data: PackedByteArray, reliable: bool) -> void:
	if command == Protocol.ECHO and id == walker and reliable and data.size() == 8:
		seqs.append(data.decode_s64(0))


## The sequence numbers this cluster got are consecutive and in order (none lost or duplicated
## in between); the client checks that west's + east's make 1..N exactly.
func _check_seqs() -> void:
	var ok := not seqs.is_empty()
	for i in range(1, seqs.size()):
		if seqs[i] != seqs[i - 1] + 1:
			ok = false
	check(ok, "got %d ECHO sequence numbers, consecutive and in order (%s..%s)" % [
		seqs.size(), seqs.front() if ok else seqs, seqs.back() if ok else ""])


func _write_report() -> void:
	var dir: String = arg("report-dir", "")
	if dir.is_empty():
		return
	var path := dir.path_join("west_seqs.json")
	var f := FileAccess.open(path + ".tmp", FileAccess.WRITE)
	if not check(f != null, "can write %s" % path):
		return
	f.store_string(JSON.stringify({"seqs": seqs, "reason": left_reason, "player": str(walker)}))
	f.close()
	check(DirAccess.rename_absolute(path + ".tmp", path) == OK, "wrote %s" % path)
