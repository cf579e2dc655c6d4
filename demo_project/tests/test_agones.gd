## SustenetCluster as an Agones GameServer (agones_enabled; the addon built with the cargo
## feature `agones`), against the recording SDK server of rust/server/tests/agones.rs run as
## a process (rust/server/examples/agones_sdk_recorder.rs) and a real `sustenet master`:
##   AGONES_SDK_GRPC_PORT=SDK godot --headless --path PROJECT -s res://tests/test_agones.gd -- \
##     --master-port=P --master-key=BASE64 --key-path=FILE --key-name=NAME --port=GAME \
##     --calls-file=RECORDER_LOG
## The cluster (agones_sdk_port 0: the port from AGONES_SDK_GRPC_PORT) takes the GameServer's
## address and port, is Ready only once registered, sends health pings, tracks a client that
## joins and leaves (SustenetClient in this process); the calls are read back from the
## recorder's log. Shutdown, sent when the game quits, is checked by scripts/godot-tests.sh.
## With --expect-unavailable (run with the default addon, built without the feature): start()
## must return ERR_UNAVAILABLE.
extends "res://tests/test_base.gd"

var cluster: SustenetCluster
var client: SustenetClient
var cluster_id := 0
var player_id := 0
var joined_player := 0
var left_player := 0
var client_id := 0
var clusters := []
var errors := []


func _initialize() -> void:
	begin("agones", 60)
	cluster = SustenetCluster.new()
	cluster.server_name = "agones_cluster"
	cluster.bind_address = "127.0.0.1"
	cluster.port = arg("port", 0)
	# Replaced by the GameServer's address: the master must list 127.0.0.1.
	cluster.public_address = "192.0.2.1"
	cluster.master_port = arg("master-port", 6256)
	cluster.key_name = arg("key-name", "agones_cluster")
	cluster.key_path = arg("key-path", "")
	cluster.max_connections = 4
	cluster.agones_enabled = true
	cluster.registered.connect(func(id): cluster_id = id)
	cluster.player_connected.connect(func(id, _data): joined_player = id)
	cluster.player_disconnected.connect(func(id, _reason): left_player = id)
	root.add_child(cluster)
	client = SustenetClient.new()
	client.master_address = "127.0.0.1"
	client.master_port = arg("master-port", 6256)
	client.master_public_key = arg("master-key", "")
	client.login_succeeded.connect(func(id): client_id = id)
	client.clusters_received.connect(func(list): clusters = list)
	client.cluster_joined.connect(func(_info, pid): player_id = pid)
	client.error.connect(func(m): errors.append(m))
	client.join_failed.connect(func(r, m): errors.append("join_failed %d %s" % [r, m]))
	root.add_child(client)
	_run()


## The SDK calls the recorder answered so far, in order.
func calls() -> Array:
	var out := []
	var text := FileAccess.get_file_as_string(arg("calls-file", ""))
	for line in text.split("\n"):
		if line.begins_with("CALL "):
			out.append(line.substr(5))
	return out


func _run() -> void:
	if arg("expect-unavailable", "") == "true":
		# The default addon build (no `agones` feature): start() refuses at once.
		var refused := cluster.start()
		check(refused == ERR_UNAVAILABLE and not cluster.is_running(),
				"without the agones feature start() returns ERR_UNAVAILABLE (got %s)" % error_string(refused))
		await finish()
		return
	check(cluster.agones_enabled and cluster.agones_sdk_port == 0 and cluster.agones_stuck_after_sec == 2.0,
			"agones properties: enabled, sdk port 0 (from AGONES_SDK_GRPC_PORT), stuck after 2 s")
	var err := cluster.start()
	if not check(err == OK, "start() returned OK (got %s)" % error_string(err)):
		await finish()
		return
	if not check(await wait_until(func(): return cluster_id != 0, 20), "registered with the master"):
		await finish()
		return
	check(await wait_until(func(): return calls().has("Ready"), 10), "Ready after registration (%s)" % [calls()])
	var first: Array = calls()
	check(first.find("SetPlayerCapacity(4)") == 0, "SetPlayerCapacity(max_connections) first (%s)" % [first])
	check(await wait_until(func():
			var c: Array = calls()
			return c.slice(c.find("Ready")).has("Health"), 10), "health pings after Ready")

	check(client.login("agones-player", "") == OK, "login() returned OK")
	check(await wait_until(func(): return client_id != 0, 10), "logged in (%s)" % [errors])
	var target: SustenetClusterInfo = null
	var deadline := Time.get_ticks_msec() + 10000
	while target == null and Time.get_ticks_msec() < deadline:
		clusters = []
		client.request_clusters()
		await wait_until(func(): return not clusters.is_empty(), 2)
		for c in clusters:
			if c is SustenetClusterInfo and c.id == cluster_id:
				target = c
	if not check(target != null, "the master lists the cluster"):
		await finish()
		return
	check(target.address == "127.0.0.1" and target.tcp_port == cluster.get_bound_tcp_port(),
			"listed at the GameServer's address and port (%s:%d)" % [target.address, target.tcp_port])
	check(client.join_cluster(cluster_id) == OK, "join_cluster() returned OK")
	check(await wait_until(func(): return player_id != 0 and joined_player == player_id, 10),
			"joined (player %d; errors %s)" % [player_id, errors])
	check(await wait_until(func(): return calls().has("PlayerConnect(%d)" % player_id), 10),
			"PlayerConnect(%d) (%s)" % [player_id, calls()])
	client.disconnect_from_server()
	check(await wait_until(func(): return left_player == player_id, 10), "player_disconnected")
	check(await wait_until(func(): return calls().has("PlayerDisconnect(%d)" % player_id), 10),
			"PlayerDisconnect(%d) (%s)" % [player_id, calls()])
	print("AGONES_PLAYER %d" % player_id)
	check(not calls().has("Shutdown"), "no Shutdown while running")
	await finish()
