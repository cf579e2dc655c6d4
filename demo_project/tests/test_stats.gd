## SustenetCluster.get_stats() and its /metrics endpoint (metrics_bind) in a real world:
##   godot --headless --path demo_project -s res://tests/test_stats.gd -- \
##     --key-dir=DIR --key-name=test_cluster --master-port=P --cluster-port=P2
## SustenetMaster + SustenetCluster + SustenetClient in this process; the client sends
## reliable packets the cluster echoes, then leaves; the numbers must say so.
extends "res://tests/test_base.gd"

const SENT := 10
var echoes := 0


func _initialize() -> void:
	begin("stats", 60)
	_run()


func _run() -> void:
	world_cluster_setup = func(c: SustenetCluster) -> void: c.metrics_bind = "127.0.0.1:0"
	var fresh := SustenetCluster.new()
	var before: Dictionary = fresh.get_stats()
	fresh.free()
	check(before.get("joins", -1) == 0 and before.get("players", -1) == 0,
			"a cluster never started has zero stats (%s)" % [before])
	if not await start_world():
		await stop_world()
		await finish()
		return
	w_cluster.packet_received.connect(func(pid, cmd, data, rel):
		if rel:
			w_cluster.send_to(pid, cmd, data))
	w_client.packet_received.connect(func(_cmd, _data, rel):
		if rel:
			echoes += 1)
	for i in SENT:
		w_client.send(7, PackedByteArray([i, 1, 2, 3]))
	check(await wait_until(func(): return echoes == SENT, 10), "%d echoes arrived" % SENT)
	check(w_cluster.set_player_position(world_cluster_pid, Vector2(5, 5)) == OK, "set_player_position OK")

	# players and fragments are sampled once a second: wait for them.
	var settled := func() -> bool:
		var now: Dictionary = w_cluster.get_stats()
		return now["players"] == 1 and now["fragments"] == 1 and now["master_link_up"]
	var ok: bool = await wait_until(settled, 10)
	var s: Dictionary = w_cluster.get_stats()
	check(ok, "players 1, fragments 1, master link up (%s)" % [s])
	check(s["joins"] == 1 and s["connections"] >= 1, "one join (%s)" % [s])
	check(s["reliable_in"] == SENT, "reliable_in == %d (%d)" % [SENT, s["reliable_in"]])
	check(s["reliable_out"] >= SENT, "reliable_out >= %d (%d)" % [SENT, s["reliable_out"]])
	check(s["bytes_in"] >= SENT * 4 and s["bytes_out"] > 0, "bytes counted (%s)" % [s])
	check(s["ticks"] > 0 and s["tick_usec_avg"] is float, "core ticks counted (%s)" % [s])
	check(s["disconnects"] == 0 and s["recent_disconnects"].is_empty(), "no disconnect yet")

	# The same numbers on the metrics endpoint.
	var port: int = w_cluster.get_metrics_port()
	check(port > 0, "metrics endpoint bound (port %d)" % port)
	var http := HTTPRequest.new()
	root.add_child(http)
	check(http.request("http://127.0.0.1:%d/metrics" % port) == OK, "GET /metrics sent")
	var got: Array = await http.request_completed
	var text: String = (got[3] as PackedByteArray).get_string_from_utf8()
	check(got[1] == 200, "GET /metrics: 200 (got %d)" % got[1])
	check(text.contains("sustenet_cluster_joins_total{cluster=\"world\"} 1"), "joins in /metrics")
	check(text.contains("sustenet_cluster_messages_received_total{cluster=\"world\",channel=\"reliable\"} %d" % SENT),
			"reliable messages in /metrics")
	http.queue_free()

	w_client.disconnect_from_server()
	check(await wait_until(func(): return w_cluster.get_stats()["disconnects"] == 1, 10), "one disconnect counted")
	s = w_cluster.get_stats()
	var recent: Array = s["recent_disconnects"]
	check(recent.size() == 1 and recent[0]["reason"] == "requested" and recent[0]["at_ms"] > 0,
			"recent_disconnects: one, requested (%s)" % [recent])
	w_cluster.stop()
	check(w_cluster.get_metrics_port() == 0, "no metrics port once stopped")
	check(w_cluster.get_stats()["joins"] == 1, "stats kept after stop")
	await stop_world()
	await finish()
