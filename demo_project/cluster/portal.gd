## The demo's instances: the world's portal and a dungeon instance's exit (docs/instances.md §8).
##
## A child of the demo cluster (cluster.gd), which calls on_pos() for every position a player
## reports. Two roles:
##
## World (a cluster without --side and without --dungeon, unless --no-portal): a player who walks
## within Protocol.PORTAL_RADIUS of Protocol.PORTAL_POS asks for a dungeon. The cluster calls
## SustenetCluster.spawn_instance(template, {"scene": dungeon}, stop_when_empty_sec) once for the
## party (the player and everybody within Protocol.PARTY_RADIUS of it), tells them PORTAL
## "opening", and on instance_ready moves each member there with transfer_player; the state
## carries "home", this cluster's id. On instance_failed the party is told PORTAL "failed" with
## the reason; the portal works again for a player once it has stepped out of it.
##   --portal-template=NAME        the agent's template (default "dungeon")
##   --portal-dungeon=NAME         the dungeon asked for, one of Protocol.DUNGEONS (default "crypt")
##   --portal-stop-when-empty=SEC  stop_when_empty_sec of the request (default 10)
##
## Dungeon (--dungeon=NAME, how an agent's template starts an instance): players arrive at the
## dungeon's entry; one who walks within Protocol.EXIT_RADIUS of its exit is moved back to the
## cluster it came from ("home" in its state), at Protocol.PORTAL_RETURN.
##   --quit-on-stdin-eof  quit (exit code 0) when standard input reaches end-of-file: the agent
##                        keeps a pipe open to every instance and closes it to stop it, and the
##                        pipe closes too when the agent dies, so the instance never outlives it
extends Node

const Protocol = preload("res://common/protocol.gd")

## "" (no portal), "world" or "dungeon".
var role := ""
var dungeon := ""
var template := "dungeon"
var portal_dungeon := "crypt"
var stop_when_empty := 10
## request id -> Array of player ids waiting for that instance.
var parties := {}
## player id -> request id, while its party waits.
var waiting := {}
## player id -> true: must step out of the portal before it works again for them.
var stepped_in := {}
## player id -> Time.get_ticks_msec() when it last opened the portal (one request per
## Protocol.PORTAL_COOLDOWN_MS and player, so walking in and out cannot flood the master).
var last_open := {}
## player id -> the world cluster id it came from (dungeon role).
var homes := {}
var stdin_watch: Thread = null

var game: Node
var cluster: SustenetCluster


## Reads the command line; returns an error message, or "" when the arguments are fine.
func configure(owner_game: Node, c: SustenetCluster, args: Dictionary, side: String) -> String:
	game = owner_game
	cluster = c
	if args.has("dungeon"):
		dungeon = String(args["dungeon"])
		if not Protocol.DUNGEONS.has(dungeon):
			return "unknown dungeon '%s' (known: %s)" % [dungeon.left(64), ", ".join(Protocol.DUNGEONS.keys())]
		role = "dungeon"
	elif side == "" and not args.has("no-portal"):
		role = "world"
	template = String(args.get("portal-template", template))
	portal_dungeon = String(args.get("portal-dungeon", portal_dungeon))
	stop_when_empty = clampi(int(args.get("portal-stop-when-empty", stop_when_empty)), 0, 86400)
	if not Protocol.DUNGEONS.has(portal_dungeon):
		return "unknown --portal-dungeon '%s'" % portal_dungeon.left(64)
	if role == "world":
		c.instance_ready.connect(_on_instance_ready)
		c.instance_failed.connect(_on_instance_failed)
	if args.has("quit-on-stdin-eof"):
		stdin_watch = Thread.new()
		stdin_watch.start(_read_stdin_until_eof)
	return ""


## What the WELCOME of a new player adds.
func welcome_extra(welcome: Dictionary) -> void:
	if role == "world":
		welcome["portal"] = {"pos": Protocol.PORTAL_POS, "radius": Protocol.PORTAL_RADIUS}
	elif role == "dungeon":
		welcome["dungeon"] = {"name": dungeon, "exit": Protocol.DUNGEONS[dungeon]["exit"],
				"radius": Protocol.EXIT_RADIUS}


## A player arrived with a handover state (cluster.gd decoded it).
func on_arrived(id: int, state: Dictionary) -> void:
	if role == "dungeon" and state.get("home") is int:
		homes[id] = state["home"]


func on_left(id: int) -> void:
	homes.erase(id)
	stepped_in.erase(id)
	last_open.erase(id)
	if waiting.has(id):
		var party: Array = parties.get(waiting[id], [])
		party.erase(id)
		waiting.erase(id)


## A player's new position; true when it is being moved (relay nothing more for it).
func on_pos(id: int, pos: Vector2) -> bool:
	match role:
		"world":
			if pos.distance_to(Protocol.PORTAL_POS) > Protocol.PORTAL_RADIUS:
				stepped_in.erase(id)
			elif not stepped_in.has(id) and not waiting.has(id):
				var now := Time.get_ticks_msec()
				if now - int(last_open.get(id, -Protocol.PORTAL_COOLDOWN_MS)) >= Protocol.PORTAL_COOLDOWN_MS:
					last_open[id] = now
					_open_portal(id, pos)
		"dungeon":
			var exit_at: Vector2 = Protocol.DUNGEONS[dungeon]["exit"]
			if pos.distance_to(exit_at) <= Protocol.EXIT_RADIUS and homes.has(id):
				return _send_home(id)
	return false


func _open_portal(id: int, pos: Vector2) -> void:
	var party: Array = []
	for other in game.players:
		var p: Dictionary = game.players[other]
		if other == id or (p["pos"].distance_to(pos) <= Protocol.PARTY_RADIUS
				and not waiting.has(other) and not game.moving.has(other)):
			party.append(other)
	for member in party:
		stepped_in[member] = true
	var request: int = cluster.spawn_instance(template, {"scene": portal_dungeon}, stop_when_empty)
	if request < 0:
		_tell(party, "failed", "the cluster is not registered with the master")
		return
	parties[request] = party
	for member in party:
		waiting[member] = request
	_tell(party, "opening", "")
	print("demo cluster: portal: asked for a '%s' instance (%s) for %d player(s), request %d" % [
		template, portal_dungeon, party.size(), request])


func _on_instance_ready(request: int, cluster_id: int) -> void:
	var party: Array = parties.get(request, [])
	parties.erase(request)
	var moved := 0
	var entry: Vector2 = Protocol.DUNGEONS[portal_dungeon]["entry"]
	for member in party:
		waiting.erase(member)
		if not game.players.has(member):
			continue
		var p: Dictionary = game.players[member]
		var state := {"name": p["name"], "pos": entry + Vector2(0, 20 * moved), "color": p["color"],
				"from": cluster.server_name, "home": cluster.get_cluster_id()}
		if cluster.transfer_player(member, cluster_id, var_to_bytes(state)) == OK:
			game.moving[member] = true
			moved += 1
	print("demo cluster: portal: instance ready as cluster %d (request %d), moving %d player(s)" % [
		cluster_id, request, moved])


func _on_instance_failed(request: int, reason: String) -> void:
	var party: Array = parties.get(request, [])
	parties.erase(request)
	for member in party:
		waiting.erase(member)
	_tell(party, "failed", reason)
	print("demo cluster: portal: request %d failed: %s" % [request, reason])


func _send_home(id: int) -> bool:
	var p: Dictionary = game.players[id]
	var state := {"name": p["name"], "pos": Protocol.PORTAL_RETURN, "color": p["color"],
			"from": cluster.server_name}
	_tell([id], "leaving", "")
	var err := cluster.transfer_player(id, homes[id], var_to_bytes(state))
	if err != OK:
		_tell([id], "failed", "the way back is closed: %s" % error_string(err))
		return false
	print("demo cluster: %s leaves the dungeon for cluster %d" % [p["name"], homes[id]])
	return true


func _tell(party: Array, state: String, reason: String) -> void:
	var msg := var_to_bytes({"state": state, "reason": reason})
	for member in party:
		if game.players.has(member):
			cluster.send_to(member, Protocol.PORTAL, msg)


# --- standard input: the agent's pipe ----------------------------------------------------

func _read_stdin_until_eof() -> void:
	while not OS.read_buffer_from_stdin(4096).is_empty():
		pass
	_stdin_closed.call_deferred()


func _stdin_closed() -> void:
	stdin_watch.wait_to_finish()
	stdin_watch = null
	game._quit("standard input closed")
