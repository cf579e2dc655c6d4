## Shared helpers for the in-engine tests. Each test is a SceneTree script run with
##   godot --headless --path demo_project -s res://tests/test_x.gd -- --name=value ...
## It arms a watchdog first thing, prints one `PASS: ...` / `FAIL: ...` line per check and
## quits with 0 only when every check passed (1 on failures, 2 on the watchdog).
extends SceneTree

## Keeps the errors printed while it is added with OS.add_logger (has(), unexpected()).
const ErrorLog := preload("res://tests/error_log.gd")

var args := {}
var passes := 0
var failures := 0
var test_name := "test"
var _finished := false

## An id equal to this was clamped from a u64 >= 2^63 (ids are drawn below 2^63 so that
## GDScript sees them positive; a saturated id means that broke).
const MAX_INT64 := 9223372036854775807


## Call first thing in _initialize().
func begin(name: String, watchdog_s: float) -> void:
	test_name = name
	create_timer(watchdog_s).timeout.connect(func():
		print("FAIL: %s: watchdog: not finished after %.0f s" % [test_name, watchdog_s])
		failures += 1
		_finish_now(2))
	for a in OS.get_cmdline_user_args():
		if a.begins_with("--"):
			var kv := a.substr(2).split("=", true, 1)
			args[kv[0]] = kv[1] if kv.size() > 1 else "true"
	print("%s: start, args %s" % [test_name, args])


func arg(name: String, default: Variant = "") -> Variant:
	if not args.has(name):
		return default
	if default is int:
		return int(args[name])
	return args[name]


func check(ok: bool, what: String) -> bool:
	if ok:
		passes += 1
		print("PASS: %s: %s" % [test_name, what])
	else:
		failures += 1
		print("FAIL: %s: %s" % [test_name, what])
	return ok


## Polls `cond` once per frame until it returns true or `timeout_s` passes.
func wait_until(cond: Callable, timeout_s: float) -> bool:
	var deadline := Time.get_ticks_msec() + int(timeout_s * 1000.0)
	while not cond.call():
		if Time.get_ticks_msec() > deadline:
			return false
		await process_frame
	return true


func wait_frames(n: int) -> void:
	for i in n:
		await process_frame


func wait_seconds(s: float) -> void:
	await create_timer(s).timeout


## One branch /root/<side> per side, each holding a node "Game" made from [param game]
## (a script); returns side -> that Game node. Give each branch its own SceneMultiplayer
## with set_multiplayer once the tree runs.
func add_game_branches(sides: Array, game: Script) -> Dictionary:
	var out := {}
	for side in sides:
		var b := Node.new()
		b.name = side
		root.add_child(b)
		var g: Node = game.new()
		g.name = "Game"
		b.add_child(g)
		out[side] = g
	return out


## Frees the nodes under root, waits for them to go, prints the result and quits.
func finish() -> void:
	if _finished:
		return
	if passes == 0 and failures == 0:
		check(false, "no check ran")
	for c in root.get_children():
		c.queue_free()
	await process_frame
	await process_frame
	_finish_now(0 if failures == 0 else 1)


func _finish_now(code: int) -> void:
	if _finished:
		return
	_finished = true
	print("%s: DONE passes=%d failures=%d -> exit %d" % [test_name, passes, failures, code])
	quit(code)


# --- a whole Sustenet in this process: SustenetMaster + SustenetCluster + SustenetClient ---

var w_master: SustenetMaster
var w_cluster: SustenetCluster
var w_client: SustenetClient
var world_cluster_id := 0
var world_player_id := 0     # as the client was told (cluster_joined)
var world_cluster_pid := 0   # as the cluster saw it (player_connected)
var world_errors := []
## The TCP port the world cluster tells players (0 = the one it listens on).
var world_public_port := 0
## Called with the world's SustenetCluster before it starts, to set its properties.
var world_cluster_setup := func(_cluster: SustenetCluster) -> void: pass


## Starts a master (keys from --key-dir: master.key and the cluster key --key-name), a
## cluster that registers with it, and a client that logs in and joins the cluster.
## Ports from --master-port / --cluster-port (0 = pick defaults). Returns true when joined.
func start_world() -> bool:
	var key_dir: String = arg("key-dir", "")
	var key_name: String = arg("key-name", "test_cluster")
	w_master = SustenetMaster.new()
	w_master.bind_address = "127.0.0.1"
	w_master.port = arg("master-port", 0)
	w_master.key_dir = key_dir
	root.add_child(w_master)
	if not check(w_master.start() == OK, "world: SustenetMaster.start() OK"):
		return false
	w_cluster = SustenetCluster.new()
	w_cluster.server_name = "world"
	w_cluster.bind_address = "127.0.0.1"
	w_cluster.port = arg("cluster-port", 0)
	w_cluster.master_port = w_master.get_bound_port()
	w_cluster.key_name = key_name
	w_cluster.key_path = key_dir.path_join(key_name)
	w_cluster.public_port = world_public_port
	world_cluster_setup.call(w_cluster)
	w_cluster.registered.connect(func(id): world_cluster_id = id)
	w_cluster.player_connected.connect(func(id, _d): world_cluster_pid = id)
	root.add_child(w_cluster)
	if not check(w_cluster.start() == OK, "world: SustenetCluster.start() OK"):
		return false
	if not check(await wait_until(func(): return world_cluster_id != 0, 10), "world: cluster registered"):
		return false
	w_client = SustenetClient.new()
	w_client.master_port = w_master.get_bound_port()
	w_client.master_public_key = w_master.get_public_key()
	w_client.cluster_joined.connect(func(_info, pid): world_player_id = pid)
	w_client.error.connect(func(m): world_errors.append(m))
	w_client.join_failed.connect(func(r, m): world_errors.append("join_failed %d %s" % [r, m]))
	w_client.login_failed.connect(func(m): world_errors.append("login_failed " + m))
	w_client.login_succeeded.connect(func(_id): w_client.join_cluster(world_cluster_id))
	root.add_child(w_client)
	if not check(w_client.login("world_player", "") == OK, "world: login() OK"):
		return false
	var ok: bool = await wait_until(func(): return (world_player_id != 0 and world_cluster_pid != 0) or not world_errors.is_empty(), 15)
	check(world_player_id != MAX_INT64, "world: player id is not saturated at 2^63-1")
	return check(ok and world_player_id != 0 and world_player_id == world_cluster_pid,
			"world: client joined the cluster, same player id both sides (%d / %d, errors %s)" % [
				world_player_id, world_cluster_pid, world_errors])


## Logs [param client] (a new SustenetClient, its own signals already connected) in to the
## world's master as [param username] and joins the world cluster. Returns its player id, or 0
## after a failed check when it did not join within 15 s.
func join_world(client: SustenetClient, username: String) -> int:
	var joined := [0]
	var errors := []
	client.master_port = w_master.get_bound_port()
	client.master_public_key = w_master.get_public_key()
	client.cluster_joined.connect(func(_info, pid): joined[0] = pid)
	client.error.connect(func(m): errors.append(m))
	client.join_failed.connect(func(r, m): errors.append("join_failed %d %s" % [r, m]))
	client.login_succeeded.connect(func(_id): client.join_cluster(world_cluster_id))
	root.add_child(client)
	check(client.login(username, "") == OK, "%s: login() OK" % username)
	var ok: bool = await wait_until(func(): return joined[0] != 0 or not errors.is_empty(), 15)
	check(ok and joined[0] != 0, "%s joined the cluster %s" % [username, errors])
	return joined[0]


func stop_world() -> void:
	if w_client: w_client.disconnect_from_server()
	if w_cluster: w_cluster.stop()
	if w_master: w_master.stop()
	await process_frame
