## Boot of the Godot-way demo. Picks the side from the command line (`--server`) or from the
## `dedicated_server` feature of a headless export, configures the Sustenet node of that side
## from the command line, and gives the game (world.tscn) its multiplayer peer. The game itself
## (world.gd, player.gd) is plain Godot multiplayer: swap the two `SustenetMultiplayerPeer`
## lines for ENetMultiplayerPeer ones and it runs over ENet.
##
## Cluster: --server --master-port=P --master-key=BASE64 (unused) --key-name=N --key-path=F
##   --port=P --name=NAME --side=west|east --border-x=X --neighbour-id=ID --quit-when-empty
## Client: --master-port=P --master-key=BASE64 --cluster-name=NAME --username=NAME
extends Node

var args := {}
var saw_players := false
var empty_for := 0.0

@onready var world: Node2D = $World


func _ready() -> void:
	for a in OS.get_cmdline_user_args():
		if a.begins_with("--"):
			var kv := a.substr(2).split("=", true, 1)
			args[kv[0]] = kv[1] if kv.size() > 1 else "true"
	if OS.has_feature("dedicated_server") or args.has("server"):
		_start_cluster()
	else:
		_start_client()


func _start_cluster() -> void:
	$SustenetClient.queue_free()
	var cluster: SustenetCluster = $SustenetCluster
	cluster.bind_address = args.get("bind", "127.0.0.1")
	cluster.port = int(args.get("port", "0"))
	cluster.master_port = int(args.get("master-port", "0"))
	cluster.key_name = args.get("key-name", "cluster_key")
	cluster.key_path = args.get("key-path", "")
	cluster.server_name = args.get("name", "Godot-way Cluster")
	cluster.registered.connect(func(id): print("GODOT_WAY_READY id=%d name=%s" % [id, cluster.server_name]))
	# Authoritative server: no client-to-client relay; the fragment grid decides who sees whom.
	multiplayer.server_relay = false
	var peer := SustenetMultiplayerPeer.new()
	peer.server_relay = false
	var err := peer.create_server(cluster)
	if err != OK:
		push_error("godot_way: create_server failed: %s" % error_string(err))
		get_tree().quit(1)
		return
	multiplayer.multiplayer_peer = peer
	$Border.setup(peer, cluster, world, args)


func _start_client() -> void:
	$SustenetCluster.queue_free()
	$Border.queue_free()
	var client: SustenetClient = $SustenetClient
	client.master_port = int(args.get("master-port", "0"))
	client.master_public_key = args.get("master-key", "")
	var target: String = args.get("cluster-name", "")
	client.login_succeeded.connect(func(_id):
		if target == "":
			client.join_best_cluster()
		else:
			client.request_clusters())
	client.clusters_received.connect(func(list):
		for c in list:
			if c.cluster_name == target:
				client.join_cluster(c.id)
				return
		client.request_clusters.call_deferred())
	var peer := SustenetMultiplayerPeer.new()
	peer.create_client(client)
	multiplayer.multiplayer_peer = peer
	client.login(args.get("username", "player"), "")


func _process(delta: float) -> void:
	# --quit-when-empty: a test cluster ends once its players are gone for 2 s.
	if not args.has("quit-when-empty") or not multiplayer.is_server():
		return
	var n: int = world.players.get_child_count()
	saw_players = saw_players or n > 0
	empty_for = empty_for + delta if saw_players and n == 0 else 0.0
	if empty_for > 2.0:
		print("godot_way: no players left; quitting")
		multiplayer.multiplayer_peer = null
		get_tree().quit(0)
