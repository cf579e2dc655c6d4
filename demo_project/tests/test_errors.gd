## Failure paths give a clear signal, never a hang or a crash:
##   godot --headless --path demo_project -s res://tests/test_errors.gd -- \
##     --master-port=P --master-key=BASE64 --dead-port=P2 --key-dir=DIR --own-master-port=P3
## 1. a wrong master public key      -> `error` mentioning the public key
## 2. a malformed public key         -> login() returns an error code at once
## 3. nothing listening on the port  -> `error` (master unreachable)
## 4. joining a cluster id that does not exist -> `join_failed`
## 5. the master goes away (an in-process SustenetMaster is stopped) -> `master_disconnected`
## 6. a SustenetMaster with its own key file, made by create_missing_keys; stop() then start()
extends "res://tests/test_base.gd"

var master_port := 0
var master_key := ""


func _initialize() -> void:
	begin("errors", 90)
	master_port = arg("master-port", 6256)
	master_key = arg("master-key", "")
	_run()


## A fresh client with every signal recorded into `ev` (name -> args).
func make_client(port: int, key: String, ev: Dictionary) -> SustenetClient:
	var c := SustenetClient.new()
	c.master_address = "127.0.0.1"
	c.master_port = port
	c.master_public_key = key
	c.connected.connect(func(): ev["connected"] = [])
	c.login_succeeded.connect(func(id): ev["login_succeeded"] = [id])
	c.login_failed.connect(func(m): ev["login_failed"] = [m])
	c.join_failed.connect(func(r, m): ev["join_failed"] = [r, m])
	c.cluster_joined.connect(func(info, pid): ev["cluster_joined"] = [pid])
	c.disconnected.connect(func(r, m): ev["disconnected"] = [r, m])
	c.master_disconnected.connect(func(r, m): ev["master_disconnected"] = [r, m])
	c.error.connect(func(m): ev["error"] = [m])
	root.add_child(c)
	return c


func drop(c: SustenetClient) -> void:
	c.disconnect_from_server()
	c.queue_free()
	await process_frame


func _run() -> void:
	# 1. Wrong public key: a valid key, but not the master's.
	var wrong := Marshalls.raw_to_base64(Crypto.new().generate_random_bytes(32))
	var ev := {}
	var c := make_client(master_port, wrong, ev)
	var t0 := Time.get_ticks_msec()
	check(c.login("wrongkey", "") == OK, "wrong key: login() returns OK (the failure comes as a signal)")
	var got := await wait_until(func(): return ev.has("error") or ev.has("login_succeeded") or ev.has("master_disconnected"), 15)
	check(got and ev.has("error"), "wrong key: `error` signal in %d ms (events: %s)" % [Time.get_ticks_msec() - t0, ev])
	if ev.has("error"):
		check(String(ev["error"][0]).to_lower().contains("public key"),
				"wrong key: the message mentions the public key: '%s'" % ev["error"][0])
	check(not ev.has("login_succeeded") and not ev.has("connected"), "wrong key: never connected nor logged in")
	await drop(c)

	# 2. A malformed key is refused at once.
	ev = {}
	c = make_client(master_port, "this is not base64!", ev)
	var err := c.login("badkey", "")
	check(err != OK, "malformed key: login() returns an error (%s)" % error_string(err))
	await wait_frames(3)
	check(not ev.has("login_succeeded"), "malformed key: no login")
	await drop(c)

	# 3. Nothing listens on the port.
	ev = {}
	c = make_client(arg("dead-port", 1), master_key, ev)
	t0 = Time.get_ticks_msec()
	check(c.login("deadport", "") == OK, "dead port: login() returns OK (the failure comes as a signal)")
	got = await wait_until(func(): return ev.has("error") or ev.has("master_disconnected") or ev.has("login_succeeded"), 15)
	check(got and ev.has("error"), "dead port: `error` signal in %d ms (events: %s)" % [Time.get_ticks_msec() - t0, ev])
	await drop(c)

	# 4. A cluster id that does not exist.
	ev = {}
	c = make_client(master_port, master_key, ev)
	c.login("nocluster", "")
	if check(await wait_until(func(): return ev.has("login_succeeded") or ev.has("error"), 10) and ev.has("login_succeeded"),
			"right key: login_succeeded (events: %s)" % [ev]):
		check(c.join_cluster(123456789) == OK, "join_cluster(unknown id) returns OK (the failure comes as a signal)")
		got = await wait_until(func(): return ev.has("join_failed") or ev.has("cluster_joined") or ev.has("error"), 10)
		check(got and ev.has("join_failed"), "unknown cluster: `join_failed` (events: %s)" % [ev])
		if ev.has("join_failed"):
			print("errors: join_failed reason %d (%s): %s" % [ev["join_failed"][0], SustenetClient.reason_text(ev["join_failed"][0]), ev["join_failed"][1]])
	await drop(c)

	# 5. The master goes away: run one in this process, then stop it.
	var m := SustenetMaster.new()
	m.bind_address = "127.0.0.1"
	m.port = arg("own-master-port", 0)
	m.key_dir = arg("key-dir", "")
	m.create_missing_keys = true
	var started := []
	m.started.connect(func(p): started.append(p))
	root.add_child(m)
	err = m.start()
	if check(err == OK, "SustenetMaster.start() OK (%s)" % error_string(err)):
		check(m.is_running(), "SustenetMaster.is_running()")
		await wait_until(func(): return not started.is_empty(), 5)
		check(started.size() == 1 and started[0] == m.get_bound_port(), "started(port) == get_port() (%s, %d)" % [started, m.get_bound_port()])
		var pub := m.get_public_key()
		check(Marshalls.base64_to_raw(pub).size() == 32, "get_public_key() is a 32-byte base64 key")
		ev = {}
		c = make_client(m.get_bound_port(), pub, ev)
		c.login("survivor", "")
		if check(await wait_until(func(): return ev.has("login_succeeded") or ev.has("error"), 10) and ev.has("login_succeeded"),
				"in-process master: login_succeeded (events: %s)" % [ev]):
			t0 = Time.get_ticks_msec()
			check(m.stop() == OK, "SustenetMaster.stop() OK")
			got = await wait_until(func(): return ev.has("master_disconnected") or ev.has("error"), 15)
			check(got and ev.has("master_disconnected"), "master gone: `master_disconnected` in %d ms (events: %s)" % [Time.get_ticks_msec() - t0, ev])
			if ev.has("master_disconnected"):
				check(int(ev["master_disconnected"][0]) > 0, "master gone: reason %d (%s) '%s'" % [
					ev["master_disconnected"][0], SustenetClient.reason_text(ev["master_disconnected"][0]), ev["master_disconnected"][1]])
			check(not m.is_running(), "SustenetMaster not running after stop()")
			# The client can be told to log in again and fails cleanly (nothing listens now).
			ev.clear()
			c.login("again", "")
			got = await wait_until(func(): return ev.has("error") or ev.has("login_succeeded"), 15)
			check(got and ev.has("error"), "login after the master stopped: `error` (events: %s)" % [ev])
		await drop(c)
	m.stop()
	await _own_key_and_restart()
	await finish()


## 6. A master with its own key file (`master_key_path`) and create_missing_keys: the key pair
## is made as that file (public key beside it, .pub), and start() right after stop() binds the
## same port again (the last run lets go of it first) and loads the same key.
func _own_key_and_restart() -> void:
	var dir := OS.get_temp_dir().path_join("sustenet-own-key-%d" % OS.get_process_id())
	DirAccess.make_dir_recursive_absolute(dir)
	var key_file := dir.path_join("my_master.key")
	var m := SustenetMaster.new()
	m.bind_address = "127.0.0.1"
	m.port = arg("own-master-port", 0)
	m.key_dir = dir
	m.master_key_path = key_file
	m.create_missing_keys = true
	root.add_child(m)
	if not check(m.start() == OK, "own key file: SustenetMaster.start() OK"):
		m.queue_free()
		return
	check(FileAccess.file_exists(key_file) and FileAccess.file_exists(dir.path_join("my_master.pub"))
			and not FileAccess.file_exists(dir.path_join("master.key")),
			"create_missing_keys made my_master.key and my_master.pub, not master.key")
	var pub := m.get_public_key()
	var port := m.get_bound_port()
	var ev := {}
	var c := make_client(port, pub, ev)
	c.login("restarter", "")
	check(await wait_until(func(): return ev.has("login_succeeded") or ev.has("error"), 10) and ev.has("login_succeeded"),
			"own key file: a client logs in (events: %s)" % [ev])
	var restarts := 0
	for i in 5:
		m.stop()
		var err := m.start()
		if err != OK:
			check(false, "SustenetMaster.start() right after stop() #%d: %s" % [i + 1, error_string(err)])
			break
		if m.get_bound_port() == port and m.get_public_key() == pub:
			restarts += 1
	check(restarts == 5, "start() right after stop(): the same port and the same key, 5 times out of 5")
	await drop(c)
	m.stop()
	m.queue_free()
	for f in ["my_master.key", "my_master.pub"]:
		DirAccess.remove_absolute(dir.path_join(f))
	DirAccess.remove_absolute(dir)
