## SustenetCluster.spawn_instance and its signals against a real master:
##   godot --headless --path demo_project -s res://tests/test_instances.gd -- \
##     --key-dir=DIR --key-name=test_cluster --master-port=P --cluster-port=P2
## SustenetMaster + SustenetCluster + SustenetClient in this process. The master has no
## agent, so every request must come back through instance_failed with the master's reason;
## a bad parameter is refused by the cluster itself. (Instances that start and become ready
## are tested with real agents in rust/cli/tests/instances.rs.)
extends "res://tests/test_base.gd"

var failed := {}
var ready_ids := []


func _initialize() -> void:
	begin("instances", 60)
	_run()


func _run() -> void:
	var idle := SustenetCluster.new()
	check(idle.spawn_instance("dungeon", {}, 0) == -1, "spawn_instance on a stopped cluster returns -1")
	idle.free()
	if not await start_world():
		await stop_world()
		await finish()
		return
	w_cluster.instance_failed.connect(func(id, reason): failed[id] = reason)
	w_cluster.instance_ready.connect(func(id, cluster_id): ready_ids.append([id, cluster_id]))
	check(await wait_until(func(): return w_cluster.get_stats()["master_link_up"], 10),
			"the cluster is registered with the master")
	var a: int = w_cluster.spawn_instance("dungeon", {"scene": "crypt"}, 30)
	var b: int = w_cluster.spawn_instance("arena", {"bad name": "x"}, 0)
	check(a > 0 and b > a, "request ids are positive and increasing (%d, %d)" % [a, b])
	check(await wait_until(func(): return failed.has(a) and failed.has(b), 10),
			"both requests answered through instance_failed (%s)" % [failed])
	check(str(failed.get(a, "")).contains("no connected agent offers template 'dungeon'"),
			"the master's reason reaches the game (%s)" % failed.get(a, ""))
	check(str(failed.get(b, "")).contains("bad name"),
			"a bad parameter is refused, named (%s)" % failed.get(b, ""))
	check(ready_ids.is_empty(), "no instance_ready without an agent")
	await stop_world()
	await finish()
