## Run in a brand-new project that has only project.godot and addons/sustenet (see the
## fresh_import test in scripts/godot-tests.sh): the extension's classes exist, nodes can be
## made, configured and freed, and the process exits 0 with nothing leaked.
##   godot --headless --path NEW_PROJECT -s res://check.gd
extends SceneTree

const CLASSES := ["SustenetClient", "SustenetCluster", "SustenetMaster", "SustenetClusterInfo"]

var failures := 0


func _initialize() -> void:
	for name in CLASSES:
		_check(ClassDB.class_exists(name), "class %s is registered" % name)
	_check(SustenetClient.REASON_TOO_MANY_TICKETS == 22
			and SustenetClient.reason_text(22) == "too many unused tickets",
		"the newest reason code has its constant and text")
	var client := SustenetClient.new()
	client.master_port = 6256
	_check(client.master_port == 6256, "a SustenetClient can be made and configured")
	_check(not client.is_in_cluster(), "a new SustenetClient is in no cluster")
	root.add_child(client)
	var cluster := SustenetCluster.new()
	root.add_child(cluster)
	_check(not cluster.is_running(), "a new SustenetCluster is not running")
	client.queue_free()
	cluster.queue_free()
	await process_frame
	await process_frame
	print("fresh project check: %d failure(s)" % failures)
	quit(1 if failures > 0 else 0)


func _check(ok: bool, what: String) -> void:
	if ok:
		print("PASS: " + what)
	else:
		failures += 1
		print("FAIL: " + what)
