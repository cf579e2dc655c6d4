## send_var / decode_var round-trip any Variant (not objects) through a real cluster echo:
##   godot --headless --path demo_project -s res://tests/test_variant.gd -- \
##     --key-dir=DIR --key-name=test_cluster --master-port=P --cluster-port=P2
## SustenetMaster + SustenetCluster + SustenetClient all in this process; the cluster's
## GDScript decodes what it gets with decode_var and sends it back with send_var_to.
extends "res://tests/test_base.gd"

var echoes := {}      # command -> [data, reliable]
var cluster_saw := {} # command -> decoded value


func _initialize() -> void:
	begin("variant", 60)
	_run()


func _run() -> void:
	if not await start_world():
		await stop_world()
		await finish()
		return
	w_cluster.packet_received.connect(func(pid, cmd, data, rel):
		var v = SustenetClient.decode_var(data)
		cluster_saw[cmd] = v
		if rel:
			w_cluster.send_var_to(pid, cmd, v)
		else:
			w_cluster.send_unreliable_to(pid, cmd, data))
	w_client.packet_received.connect(func(cmd, data, rel): echoes[cmd] = [data, rel])

	var value := {
		"name": "Ünïcødé ✓",
		"n": 42,
		"big": 9007199254740993,
		"f": 1.5,
		"ok": true,
		"none": null,
		"v2": Vector2(1.5, -2.25),
		"v3": Vector3(0.5, 100.0, -7.0),
		"v2i": Vector2i(3, -4),
		"color": Color(0.25, 0.5, 0.75, 1.0),
		"nested": [1, [2, [3, Vector3(1, 2, 3)]], {"k": [Vector2(4, 5), "x"]}],
		"bytes": PackedByteArray([0, 1, 254, 255]),
		"floats": PackedFloat32Array([0.5, 1.5]),
		7: "int key",
	}
	check(w_client.send_var(20, value) == OK, "send_var(Dictionary) OK")
	check(await wait_until(func(): return echoes.has(20), 5), "echo of the Dictionary arrived")
	if echoes.has(20):
		var back = SustenetClient.decode_var(echoes[20][0])
		check(back is Dictionary, "decode_var gives a Dictionary")
		check(cluster_saw.get(20) == value, "the cluster decoded the same Dictionary")
		check(back == value, "round trip: equal Dictionary (got %s)" % [back])
		if back is Dictionary:
			check(back["v2"] is Vector2 and back["v3"] is Vector3, "vectors keep their types")
			check(back["nested"][1][1][1] == Vector3(1, 2, 3), "nested arrays keep their vectors")
		check(echoes[20][1] == true, "send_var is reliable")

	# Unreliable variant of the pair.
	var small := {"pos": Vector2(10.25, 20.5), "seq": [1, 2, 3]}
	var ok_unrel := false
	for i in 30:
		w_client.send_var_unreliable(21, small)
		if await wait_until(func(): return echoes.has(21), 0.2):
			ok_unrel = true
			break
	check(ok_unrel, "send_var_unreliable: echo arrived")
	if ok_unrel:
		check(SustenetClient.decode_var(echoes[21][0]) == small, "send_var_unreliable round trip")
		check(echoes[21][1] == false, "send_var_unreliable is unreliable")

	# Objects are never decoded (untrusted input): bytes_to_var, not bytes_to_var_with_objects.
	var obj := RefCounted.new()
	var obj_bytes := var_to_bytes_with_objects(obj)
	var decoded = SustenetClient.decode_var(obj_bytes)
	check(not (decoded is Object), "decode_var refuses encoded objects (got %s)" % [decoded])
	var junk := PackedByteArray([1, 2, 3])
	decoded = SustenetClient.decode_var(junk)
	check(decoded == null, "decode_var of junk bytes is null (got %s)" % [decoded])
	check(SustenetClient.decode_var(PackedByteArray()) == null, "decode_var of empty bytes is null")

	# auto_join: a client with no code logs in as `username` and joins the best cluster.
	var auto := SustenetClient.new()
	auto.master_port = w_master.get_bound_port()
	auto.master_public_key = w_master.get_public_key()
	auto.username = "auto_player"
	auto.auto_join = true
	var auto_ev := {}
	auto.cluster_joined.connect(func(info, pid): auto_ev["joined"] = auto_ev.get("joined", 0) + 1)
	auto.disconnected.connect(func(r, m): auto_ev["disconnected"] = [r, m])
	auto.error.connect(func(m): auto_ev["error"] = m)
	root.add_child(auto)
	check(await wait_until(func(): return auto_ev.has("joined") or auto_ev.has("error"), 10) and auto_ev.has("joined"),
			"auto_join: joined the cluster on its own (%s)" % [auto_ev])
	# leave() keeps the login: joining again needs no new login.
	if auto_ev.has("joined"):
		check(auto.leave() == OK, "leave() OK")
		check(await wait_until(func(): return auto_ev.has("disconnected"), 5), "leave(): disconnected fired (%s)" % [auto_ev.get("disconnected")])
		await wait_frames(2)
		check(not auto.is_in_cluster(), "leave(): not in a cluster")
		check(auto.join_best_cluster() == OK, "join_best_cluster() after leave() OK")
		check(await wait_until(func(): return auto_ev.get("joined", 0) >= 2, 10), "joined again after leave() without a new login")
	auto.disconnect_from_server()

	await stop_world()
	await finish()
