## Client side of the two-process test (the cluster is test_cluster_node.gd in another
## headless Godot process, the master a real `sustenet master`):
##   godot --headless --path demo_project -s res://tests/test_client_cluster.gd -- \
##     --master-port=P --master-key=BASE64 --cluster-name=test_cluster
## Logs in, lists the clusters, joins the test cluster, sends and receives on both
## channels checking command, bytes and player id, then asks to be kicked and checks
## `disconnected(REASON_KICKED, message)`.
extends "res://tests/test_base.gd"

const TestCluster = preload("res://tests/test_cluster_node.gd")

var client: SustenetClient
var events := []   # [name, args] in order
var client_id := 0
var clusters := []
var joined_info: SustenetClusterInfo
var player_id := 0
var packets := {}  # command -> [data, reliable]
var disc := []
var errors := []


func _initialize() -> void:
	begin("client_cluster", 60)
	client = SustenetClient.new()
	client.master_address = "127.0.0.1"
	client.master_port = arg("master-port", 6256)
	client.master_public_key = arg("master-key", "")
	client.connected.connect(func(): events.append("connected"))
	client.login_succeeded.connect(func(id): events.append("login_succeeded"); client_id = id)
	client.login_failed.connect(func(m): events.append("login_failed"); errors.append(m))
	client.clusters_received.connect(func(list): clusters = list)
	client.cluster_joined.connect(func(info, pid): joined_info = info; player_id = pid)
	client.join_failed.connect(func(r, m): errors.append("join_failed %d %s" % [r, m]))
	client.packet_received.connect(func(cmd, data, rel): packets[cmd] = [data, rel])
	client.disconnected.connect(func(r, m): disc = [r, m])
	client.error.connect(func(m): errors.append(m))
	root.add_child(client)
	_run()


func _run() -> void:
	var name: String = arg("cluster-name", "test_cluster")
	check(client.login("tester", "") == OK, "login() returned OK")
	if not check(await wait_until(func(): return client_id != 0 or not errors.is_empty(), 10) and client_id != 0,
			"login_succeeded (errors: %s)" % [errors]):
		await finish()
		return
	check(events.find("connected") >= 0 and events.find("connected") < events.find("login_succeeded"),
			"connected fired before login_succeeded")
	check(client.get_client_id() == client_id, "get_client_id() == login id")
	check(not client.is_in_cluster() and client.get_cluster() == null, "not in a cluster yet")

	# The cluster process may still be registering: ask until it is listed.
	var target: SustenetClusterInfo = null
	var deadline := Time.get_ticks_msec() + 15000
	while target == null and Time.get_ticks_msec() < deadline:
		clusters = []
		client.request_clusters()
		await wait_until(func(): return not clusters.is_empty(), 2)
		for c in clusters:
			if c is SustenetClusterInfo and c.cluster_name == name:
				target = c
		if target == null:
			await wait_seconds(0.3)
	if not check(target != null, "clusters_received lists '%s' (got %d clusters)" % [name, clusters.size()]):
		await finish()
		return
	check(target.id > 0 and target.tcp_port > 0 and target.udp_port > 0 and target.address != "",
			"cluster info: id %d, %s tcp %d udp %d" % [target.id, target.address, target.tcp_port, target.udp_port])
	check(target.players == 0 and not target.locked, "cluster info: 0 players, not locked (players %d capacity %d)" % [target.players, target.capacity])
	# The test cluster leaves max_connections at 0: it registers the default bound.
	check(target.capacity == 1000, "cluster info: capacity 1000, the default bound (got %d)" % [target.capacity])

	check(client.join_cluster(target.id) == OK, "join_cluster() returned OK")
	if not check(await wait_until(func(): return player_id != 0 or not errors.is_empty(), 10) and player_id != 0,
			"cluster_joined (errors: %s)" % [errors]):
		await finish()
		return
	check(joined_info != null and joined_info.id == target.id and joined_info.cluster_name == name,
			"cluster_joined info is the cluster we asked for")
	check(client.is_in_cluster(), "is_in_cluster()")
	check(client.get_cluster() != null and client.get_cluster().id == target.id, "get_cluster().id")

	# Cluster -> client: its view of our player id.
	check(await wait_until(func(): return packets.has(100), 5), "got command 100 from the cluster")
	if packets.has(100):
		var v = SustenetClient.decode_var(packets[100][0])
		check(v is Dictionary and v.get("player_id") == player_id,
				"the cluster's player id (%s) == cluster_joined player id (%d)" % [v, player_id])
		check(packets[100][1] == true, "command 100 came reliably")

	# Reliable both ways.
	var big := TestCluster.pattern(player_id, TestCluster.PATTERN_LEN)
	check(client.send(101, big) == OK, "send(101) returned OK")
	check(await wait_until(func(): return packets.has(102), 5), "reliable echo (102) arrived")
	if packets.has(102):
		check(packets[102][0] == big, "reliable echo: %d bytes as sent" % packets[102][0].size())
		check(packets[102][1] == true, "reliable echo: reliable == true")

	# Unreliable both ways (repeat: datagrams may be lost, and UDP may still be setting up).
	var small := TestCluster.pattern(player_id, 100)
	var ok_unrel := false
	for i in 50:
		client.send_unreliable(103, small)
		if await wait_until(func(): return packets.has(104), 0.2):
			ok_unrel = true
			break
	check(ok_unrel, "unreliable echo (104) arrived")
	if packets.has(104):
		check(packets[104][0] == small, "unreliable echo: bytes as sent")
		check(packets[104][1] == false, "unreliable echo: reliable == false")
	var too_big := PackedByteArray()
	too_big.resize(SustenetClient.MAX_UNRELIABLE_PAYLOAD + 1)
	check(client.send_unreliable(103, too_big) == ERR_INVALID_PARAMETER,
			"send_unreliable() over MAX_UNRELIABLE_PAYLOAD returns ERR_INVALID_PARAMETER")

	# Empty payloads.
	check(client.send(105, PackedByteArray()) == OK, "send(105, empty) OK")
	check(await wait_until(func(): return packets.has(106), 5), "empty reliable packet (106) arrived")
	if packets.has(106):
		check(packets[106][0].is_empty(), "106 is empty")

	check(client.get_reliable_rtt_ms() >= 0.0, "get_reliable_rtt_ms() = %.3f" % client.get_reliable_rtt_ms())

	# Kick.
	check(client.send(107, PackedByteArray([1])) == OK, "send(107) (kick me) OK")
	if check(await wait_until(func(): return not disc.is_empty(), 10), "disconnected fired after the kick"):
		check(disc[0] == SustenetClient.REASON_KICKED,
				"disconnected reason == REASON_KICKED (got %d: %s)" % [disc[0], SustenetClient.reason_text(disc[0])])
		check(String(disc[1]).contains(TestCluster.KICK_MESSAGE), "disconnected message holds the kick message (got '%s')" % disc[1])
	check(not SustenetClient.reason_text(SustenetClient.REASON_KICKED).is_empty(),
			"reason_text(REASON_KICKED) = '%s'" % SustenetClient.reason_text(SustenetClient.REASON_KICKED))
	await wait_frames(2)
	check(not client.is_in_cluster(), "not is_in_cluster() after the kick")
	check(client.disconnect_from_server() == OK, "disconnect_from_server() OK")
	joined_info = null
	clusters = []
	await finish()
