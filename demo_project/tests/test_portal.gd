## The demo's portal in the engine: a party walks into a fresh dungeon instance and back out.
##   godot --headless --path demo_project -s res://tests/test_portal.gd -- \
##     --master-port=P --master-key=BASE64 --cluster-name=NAME
## The world is the demo cluster (cluster.tscn) registered as NAME; a real `sustenet agent`
## offers the template "dungeon": the headless export of the demo with --dungeon=crypt
## (scripts/godot-tests.sh, test `portal`). Three players join the world: ann and bob stand
## together, cid stays far away. Checks:
## - ann walks into the portal: ann and bob are told PORTAL "opening", then redirected to a new
##   cluster "Dungeon crypt" (same player ids) whose WELCOME has the dungeon; cid stays;
## - in the dungeon ann and bob see each other; each walks to the exit, is told "leaving" and is
##   redirected back to the world (its id), whose WELCOME has the portal again; cid sees them
##   come back;
## - once both are out, the dungeon leaves the master's cluster list (stop_when_empty_sec).
extends "res://tests/test_base.gd"

const Protocol = preload("res://common/protocol.gd")

var world_name := ""
var world_id := 0
var dungeon_id := 0
var listed := {}        # cluster name -> id
var players := {}       # "ann" | "bob" | "cid" -> Dictionary (see _player)


func _initialize() -> void:
	begin("portal", 100)
	world_name = arg("cluster-name", "portal_world")
	for who in ["ann", "bob", "cid"]:
		players[who] = _player(who)
	_run()


## One client and what it saw: "joins" [[cluster name, cluster id, player id]], "portal" states,
## "welcomes" (the WELCOME dictionaries), "joined" names of PLAYER_JOINED, "events".
func _player(who: String) -> Dictionary:
	var c := SustenetClient.new()
	c.name = who
	c.master_port = arg("master-port", 6256)
	c.master_public_key = arg("master-key", "")
	var p := {"c": c, "joins": [], "portal": [], "welcomes": [], "joined": [], "events": []}
	c.clusters_received.connect(func(list):
		listed.clear()
		for info: SustenetClusterInfo in list:
			listed[info.cluster_name] = info.id)
	c.cluster_joined.connect(func(info, pid): p["joins"].append([info.cluster_name, info.id, pid]))
	c.redirected.connect(func(info): p["events"].append(["redirected", info.cluster_name]))
	c.disconnected.connect(func(r, m): p["events"].append(["disconnected", SustenetClient.reason_text(r), m]))
	c.join_failed.connect(func(r, m): p["events"].append(["join_failed", SustenetClient.reason_text(r), m]))
	c.packet_received.connect(_on_packet.bind(p, who))
	root.add_child(c)
	return p


func _on_packet(command: int, data: PackedByteArray, _reliable: bool, p: Dictionary, who: String) -> void:
	match command:
		Protocol.PORTAL:
			var d = SustenetClient.decode_var(data)
			p["portal"].append(d.get("state", "?") if d is Dictionary else "?")
			if d is Dictionary and d.get("state") == "failed":
				print("portal: %s told: failed: %s" % [who, d.get("reason", "")])
		Protocol.WELCOME:
			var w = SustenetClient.decode_var(data)
			if w is Dictionary:
				p["welcomes"].append(w)
		Protocol.PLAYER_JOINED:
			var j = SustenetClient.decode_var(data)
			if j is Dictionary:
				p["joined"].append(str(j.get("name", "")))
		Protocol.POS:
			if data.size() == 16:
				p["events"].append(["pos", data.decode_s64(0)])


## Sends `who`'s position every 50 ms until `cond` holds (at most `timeout_s`).
func walk_until(who: String, pos: Vector2, cond: Callable, timeout_s: float) -> bool:
	var c: SustenetClient = players[who]["c"]
	var deadline := Time.get_ticks_msec() + int(timeout_s * 1000)
	while Time.get_ticks_msec() < deadline:
		if cond.call():
			return true
		c.send_unreliable(Protocol.POS, Protocol.encode_pos(pos))
		await wait_seconds(0.05)
	return cond.call()


func _run() -> void:
	var lister: SustenetClient = players["cid"]["c"]
	for who in players:
		check(players[who]["c"].login(who, "") == OK, "%s: login() OK" % who)
	var t0 := Time.get_ticks_msec()
	while not listed.has(world_name) and Time.get_ticks_msec() - t0 < 15000:
		await wait_seconds(0.3)
		lister.request_clusters()
	if not check(listed.has(world_name), "the master lists the world '%s' (%s)" % [world_name, listed]):
		await _end()
		return
	world_id = listed[world_name]
	for who in players:
		players[who]["c"].join_cluster(world_id)
	var welcomed := func():
		return players.values().all(func(p): return p["welcomes"].size() == 1)
	if not check(await wait_until(welcomed, 15), "all three joined the world and got its WELCOME"):
		await _end()
		return
	var w: Dictionary = players["ann"]["welcomes"][0]
	check(w.get("portal") is Dictionary and w["portal"].get("pos") == Protocol.PORTAL_POS,
			"the world's WELCOME shows the portal at %s (%s)" % [Protocol.PORTAL_POS, w.get("portal")])
	var pid := {}
	for who in players:
		pid[who] = players[who]["joins"][0][2]

	# cid far away, bob beside the portal (within PARTY_RADIUS of it, outside PORTAL_RADIUS):
	# wait until cid sees bob's position relayed, so the world knows where bob stands.
	var cid_saw_bob := func(): return players["cid"]["events"].has(["pos", pid["bob"]])
	await walk_until("cid", Vector2(-300, 100), func(): return false, 0.3)
	check(await walk_until("bob", Protocol.PORTAL_POS - Vector2(50, 0), cid_saw_bob, 10),
			"bob stands beside the portal (the world relayed his position)")
	# ann walks in; ann and bob go together.
	var in_dungeon := func(who): return players[who]["joins"].size() >= 2
	var both_in := func(): return in_dungeon.call("ann") and in_dungeon.call("bob")
	check(await walk_until("ann", Protocol.PORTAL_POS, func(): return players["ann"]["portal"].size() > 0, 10),
			"ann is told about the portal once inside (%s)" % [players["ann"]["portal"]])
	check(players["ann"]["portal"][0] == "opening" if players["ann"]["portal"].size() > 0 else false,
			"... PORTAL 'opening' (%s)" % [players["ann"]["portal"]])
	if not check(await wait_until(both_in, 60),
			"ann and bob are moved to the dungeon instance (ann %s, bob %s; %s %s)" % [
				players["ann"]["joins"], players["bob"]["joins"], players["ann"]["events"].filter(func(e): return e[0] != "pos"),
				players["ann"]["portal"]]):
		await _end()
		return
	var ann_d: Array = players["ann"]["joins"][1]
	var bob_d: Array = players["bob"]["joins"][1]
	dungeon_id = ann_d[1]
	check(ann_d[0] == "Dungeon crypt" and dungeon_id != world_id and bob_d[1] == dungeon_id,
			"both on the same new cluster 'Dungeon crypt' (%s, %s)" % [ann_d, bob_d])
	check(ann_d[2] == pid["ann"] and bob_d[2] == pid["bob"], "same player ids in the dungeon")
	check(players["bob"]["portal"].has("opening"), "bob was told 'opening' too (%s)" % [players["bob"]["portal"]])
	check(players["cid"]["joins"].size() == 1, "cid, far from the portal, stays in the world")
	var dungeon_welcomed := func(): return players["ann"]["welcomes"].size() >= 2 and players["bob"]["welcomes"].size() >= 2
	if check(await wait_until(dungeon_welcomed, 10), "the dungeon's WELCOME reached ann and bob"):
		var dw: Dictionary = players["ann"]["welcomes"][1]
		check(dw.get("dungeon") is Dictionary and dw["dungeon"].get("name") == "crypt"
				and dw["dungeon"].get("exit") == Protocol.DUNGEONS["crypt"]["exit"],
				"the dungeon's WELCOME names the crypt and its exit (%s)" % [dw.get("dungeon")])
		var bw: Dictionary = players["bob"]["welcomes"][1]
		var sees_ann = bw.get("players", {}).has(pid["ann"]) or players["bob"]["joined"].has("ann")
		check(await wait_until(func(): return sees_ann or players["bob"]["joined"].has("ann") \
				or players["ann"]["joined"].has("bob"), 5), "ann and bob meet in the dungeon")

	# Out again, one after the other, back to the world.
	var exit_at: Vector2 = Protocol.DUNGEONS["crypt"]["exit"]
	for who in ["ann", "bob"]:
		var back := func(): return players[who]["joins"].size() >= 3
		if check(await walk_until(who, exit_at, back, 20), "%s walks out of the dungeon (%s)" % [who, players[who]["joins"]]):
			var j: Array = players[who]["joins"][2]
			check(j[1] == world_id and j[2] == pid[who], "%s is back in the world, same player id (%s)" % [who, j])
			check(players[who]["portal"].has("leaving"), "%s was told 'leaving' (%s)" % [who, players[who]["portal"]])
			var welcomed_back := func(): return players[who]["welcomes"].size() >= 3
			if check(await wait_until(welcomed_back, 5), "%s got the world's WELCOME again" % who):
				check(players[who]["welcomes"][2].get("portal") is Dictionary, "... with the portal")
			# Step away from where we arrived so the portal does not catch us again.
			await walk_until(who, Protocol.PORTAL_RETURN - Vector2(100, 0), func(): return false, 0.3)
	check(await wait_until(func(): return players["cid"]["joined"].count("ann") >= 1 \
			and players["cid"]["joined"].count("bob") >= 1, 5), "cid sees ann and bob come back (%s)" % [players["cid"]["joined"]])
	for who in players:
		var bad: Array = players[who]["events"].filter(func(e): return e[0] == "disconnected" or e[0] == "join_failed")
		check(bad.is_empty(), "%s: no disconnect or failed join on the way (%s)" % [who, bad])

	# Empty now: the master stops the dungeon after stop_when_empty_sec; it leaves the list.
	var gone := func(): return not listed.values().has(dungeon_id)
	var t1 := Time.get_ticks_msec()
	while not gone.call() and Time.get_ticks_msec() - t1 < 30000:
		await wait_seconds(0.5)
		lister.request_clusters()
		await wait_seconds(0.2)
	check(gone.call(), "the empty dungeon (cluster %d) left the master's list (%s)" % [dungeon_id, listed])
	print("PORTAL_DONE dungeon=%d" % dungeon_id)
	await _end()


func _end() -> void:
	for who in players:
		players[who]["c"].disconnect_from_server()
	await wait_seconds(0.3)
	for who in players:
		players[who]["c"].queue_free()
	await wait_frames(2)
	await finish()
