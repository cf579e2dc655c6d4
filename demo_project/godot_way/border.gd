## Server meshing and interest management for the Godot-way demo (cluster side only; the
## game knows nothing of it). Two clusters side by side: "west" serves x < border_x, "east"
## x >= border_x. A player that walks 2 units past the border is moved to the neighbour with
## SustenetMultiplayerPeer.transfer_peer, its position travelling in the transfer state; the
## neighbour spawns it there. Positions go to the cluster's fragment grid, and each player's
## synchronizer is shown only to players within `interest_radius`.
extends Node

const MARGIN := 2.0
## The transfer state starts with this, then var_to_bytes(position).
const MAGIC := "GWAY"

@export var interest_radius := 64.0

var peer: SustenetMultiplayerPeer
var cluster: SustenetCluster
var world: Node2D
var side := ""
var border_x := 0.0
var neighbour_id := 0
var arriving := {}   # Sustenet player id -> position from the transfer state
var moving := {}     # peer ids being moved
var since_visibility := 0.0


func setup(p: SustenetMultiplayerPeer, c: SustenetCluster, w: Node2D, args: Dictionary) -> void:
	peer = p
	cluster = c
	world = w
	side = String(args.get("side", ""))
	border_x = float(args.get("border-x", "0"))
	neighbour_id = int(args.get("neighbour-id", "0"))
	cluster.player_connected.connect(_on_player_connected)
	# Connected after the game's own handler: the player's node exists when this runs.
	world.multiplayer.peer_connected.connect(_on_peer_connected)
	world.multiplayer.peer_disconnected.connect(func(id): moving.erase(id))


func _on_player_connected(player_id: int, data: PackedByteArray) -> void:
	if data.size() > 4 and data.slice(0, 4).get_string_from_ascii() == MAGIC:
		var pos = bytes_to_var(data.slice(4))
		if pos is Vector2:
			arriving[player_id] = pos


func _on_peer_connected(id: int) -> void:
	var pos = arriving.get(peer.get_player_id(id))
	var node: Node2D = world.player_of(id)
	if pos is Vector2 and node:
		node.position = pos
		arriving.erase(peer.get_player_id(id))
	print("godot_way %s: peer %d joined at %s" % [side, id, node.position if node else Vector2.ZERO])


func _physics_process(delta: float) -> void:
	if peer == null:
		return
	since_visibility += delta
	var refresh := since_visibility >= 0.25
	if refresh:
		since_visibility = 0.0
	for node in world.players.get_children():
		var id: int = node.peer_id()
		var player_id := peer.get_player_id(id)
		if player_id < 0:
			continue
		cluster.set_player_position(player_id, node.position)
		if refresh:
			peer.update_visibility(node.get_node("Sync"), id, interest_radius)
		var out: bool = (side == "west" and node.position.x >= border_x + MARGIN) \
				or (side == "east" and node.position.x < border_x - MARGIN)
		if out and neighbour_id != 0 and not moving.has(id):
			moving[id] = true
			var state := MAGIC.to_ascii_buffer() + var_to_bytes(node.position)
			print("godot_way %s: moving peer %d at %s to cluster %d" % [side, id, node.position, neighbour_id])
			peer.transfer_peer(id, neighbour_id, state)
