## Smoke test of an installed addon, for every platform the release ships (run by
## scripts/smoke-test.sh in a fresh project holding only addons/sustenet/ and this file):
##   godot --headless --path <project> -s res://test_smoke.gd -- --master-port=P --master-key=BASE64
## Checks that the extension is loaded and its classes exist, then a SustenetClient logs in
## to a `sustenet up` on 127.0.0.1, lists the clusters and joins one. Self-contained (no other
## script of the demo) and written against ClassDB, so that a missing extension is reported
## as a failed check rather than a parse error. Prints `PASS: ` / `FAIL: ` lines, then
## `SMOKE OK` and exits 0, or exits 1; a watchdog exits 2 after 60 s.
extends SceneTree

const CLASSES := ["SustenetClient", "SustenetCluster", "SustenetMaster", "SustenetClusterInfo"]
const EXTENSION := "res://addons/sustenet/sustenet.gdextension"

var failures := 0
var client: Node
var client_id := 0
var clusters := []
var player_id := 0
var errors := []


func _initialize() -> void:
	create_timer(60.0).timeout.connect(func():
		print("FAIL: smoke: watchdog: not finished after 60 s")
		quit(2))
	_run()


func check(ok: bool, what: String) -> bool:
	print("%s: smoke: %s" % ["PASS" if ok else "FAIL", what])
	if not ok:
		failures += 1
	return ok


func arg(name: String) -> String:
	for a in OS.get_cmdline_user_args():
		if a.begins_with("--%s=" % name):
			return a.substr(name.length() + 3)
	return ""


func wait_until(cond: Callable, timeout_s: float) -> bool:
	var deadline := Time.get_ticks_msec() + int(timeout_s * 1000.0)
	while not cond.call():
		if Time.get_ticks_msec() > deadline:
			return false
		await process_frame
	return true


func _run() -> void:
	print("smoke: Godot %s on %s %s" % [Engine.get_version_info().string, OS.get_name(),
			Engine.get_architecture_name()])
	check(GDExtensionManager.is_extension_loaded(EXTENSION), "%s is loaded" % EXTENSION)
	var missing := CLASSES.filter(func(c): return not ClassDB.class_exists(c))
	if not check(missing.is_empty(), "classes exist: %s (missing: %s)" % [CLASSES, missing]):
		_finish()
		return
	await _talk_to_master()
	_finish()


func _talk_to_master() -> void:
	client = ClassDB.instantiate("SustenetClient")
	client.master_address = "127.0.0.1"
	client.master_port = int(arg("master-port"))
	client.master_public_key = arg("master-key")
	client.login_succeeded.connect(func(id): client_id = id)
	client.login_failed.connect(func(m): errors.append("login_failed: %s" % m))
	client.clusters_received.connect(func(list): clusters = list)
	client.cluster_joined.connect(func(_info, pid): player_id = pid)
	client.join_failed.connect(func(r, m): errors.append("join_failed %d: %s" % [r, m]))
	client.error.connect(func(m): errors.append("error: %s" % m))
	root.add_child(client)

	check(client.login("smoke", "") == OK, "login() returned OK")
	if not check(await wait_until(func(): return client_id != 0 or not errors.is_empty(), 15.0)
			and client_id != 0, "login_succeeded from the master on port %d (errors: %s)"
			% [client.master_port, errors]):
		return
	# `sustenet up` registers its clusters as it starts: ask until one is listed.
	var deadline := Time.get_ticks_msec() + 15000
	while clusters.is_empty() and Time.get_ticks_msec() < deadline:
		client.request_clusters()
		await wait_until(func(): return not clusters.is_empty(), 1.0)
	if not check(not clusters.is_empty(), "clusters_received lists the clusters of `sustenet up`"):
		return
	var target = clusters[0]
	check(client.join_cluster(target.id) == OK, "join_cluster(%d) returned OK" % target.id)
	check(await wait_until(func(): return player_id != 0 or not errors.is_empty(), 15.0)
			and player_id != 0, "cluster_joined '%s' as player %d (errors: %s)"
			% [target.cluster_name, player_id, errors])


func _finish() -> void:
	if client != null:
		client.queue_free()
		client = null
	await process_frame
	await process_frame
	if failures == 0:
		print("SMOKE OK")
	quit(0 if failures == 0 else 1)
