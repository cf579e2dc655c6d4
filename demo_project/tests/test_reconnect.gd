## Reconnection in the engine: the client reaches the cluster through a TCP proxy
## (tcp_proxy.gd) that the test cuts and restores. Both sides see the drop and the
## return as signals, the player id stays, and numbered reliable packets sent before,
## during and after the gap arrive once each and in order, both ways:
##   godot --headless --path demo_project -s res://tests/test_reconnect.gd -- \
##     --key-dir=DIR --key-name=test_cluster --master-port=P --cluster-port=P2
## SustenetMaster + SustenetCluster + SustenetClient + the proxy all in this process.
extends "res://tests/test_base.gd"

const NUMBERED := 40
const PER_PHASE := 50

var proxy: Node
var up_seen: Array = []        # numbers the cluster received
var down_seen: Array = []      # numbers the client received
var client_reconnecting := 0
var client_reconnected := 0
var client_away_ms := 0.0
var cluster_lost: Array = []   # [player_id, reason]
var cluster_back: Array = []   # player ids
var cluster_gone: Array = []   # [player_id, reason]
var next_up := 0
var next_down := 0


func _initialize() -> void:
	begin("reconnect", 90)
	_run()


func _burst() -> void:
	for i in PER_PHASE:
		w_client.send_var(NUMBERED, next_up)
		next_up += 1
		w_cluster.send_var_to(world_player_id, NUMBERED, next_down)
		next_down += 1


func _run() -> void:
	proxy = load("res://tests/tcp_proxy.gd").new()
	root.add_child(proxy)
	var proxy_port: int = proxy.listen()
	if not check(proxy_port > 0, "the proxy listens"):
		await finish()
		return
	proxy.upstream = func(): return w_cluster.get_bound_tcp_port()
	world_public_port = proxy_port
	if not await start_world():
		await stop_world()
		await finish()
		return
	check(proxy.connections() == 1, "the client reached the cluster through the proxy")
	var player_id := world_player_id

	w_cluster.packet_received.connect(func(_pid, cmd, data, rel):
		if cmd == NUMBERED and rel:
			up_seen.append(SustenetClient.decode_var(data)))
	w_client.packet_received.connect(func(cmd, data, rel):
		if cmd == NUMBERED and rel:
			down_seen.append(SustenetClient.decode_var(data)))
	w_client.reconnecting.connect(func(_r, _m): client_reconnecting += 1)
	w_client.reconnected.connect(func(ms):
		client_reconnected += 1
		client_away_ms = ms)
	w_cluster.player_connection_lost.connect(func(id, r): cluster_lost.append([id, r]))
	w_cluster.player_reconnected.connect(func(id): cluster_back.append(id))
	w_cluster.player_disconnected.connect(func(id, r): cluster_gone.append([id, r]))

	_burst()
	proxy.cut()
	check(await wait_until(func(): return client_reconnecting == 1, 10), "client: reconnecting signal")
	check(w_client.is_reconnecting(), "client: is_reconnecting() while the link is down")
	check(w_client.is_in_cluster(), "client: still in the cluster while reconnecting")
	check(await wait_until(func(): return cluster_lost.size() == 1, 10), "cluster: player_connection_lost signal")
	if cluster_lost.size() == 1:
		check(cluster_lost[0][0] == player_id and cluster_lost[0][1] == SustenetClient.REASON_CONNECTION_LOST,
				"cluster: the lost player and REASON_CONNECTION_LOST (%s)" % [cluster_lost[0]])

	# While the link is down, both sides go on sending; it is kept for after.
	_burst()
	await wait_seconds(0.5)
	proxy.restore()
	check(await wait_until(func(): return client_reconnected == 1, 15), "client: reconnected signal")
	check(client_away_ms >= 400.0, "client: away for the time the link was down (%.0f ms)" % client_away_ms)
	check(not w_client.is_reconnecting(), "client: not reconnecting any more")
	check(await wait_until(func(): return cluster_back.size() == 1, 10), "cluster: player_reconnected signal")
	if cluster_back.size() == 1:
		check(cluster_back[0] == player_id, "cluster: the same player id came back")
	check(w_client.get_client_id() == player_id, "client: the same player id")

	_burst()
	var total := 3 * PER_PHASE
	check(await wait_until(func(): return up_seen.size() >= total and down_seen.size() >= total, 15),
			"every numbered packet arrived (cluster %d, client %d of %d)" % [up_seen.size(), down_seen.size(), total])
	await wait_seconds(0.3)
	var want := range(total)
	check(up_seen == want, "client -> cluster: once each, in order (%d)" % up_seen.size())
	check(down_seen == want, "cluster -> client: once each, in order (%d)" % down_seen.size())
	check(cluster_gone.is_empty(), "cluster: nobody left (%s)" % [cluster_gone])
	await stop_world()
	await finish()
