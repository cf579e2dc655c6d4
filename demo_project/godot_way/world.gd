## The game, written the Godot way: a MultiplayerSpawner spawns player.tscn per peer, a
## MultiplayerSynchronizer in it replicates the position, and @rpc functions carry movement
## and chat. The server is authoritative: clients ask to move, the server moves them.
## It runs over whatever `multiplayer.multiplayer_peer` main.gd made.
extends Node2D

const PLAYER := preload("res://godot_way/player.tscn")

## Where a new player starts.
@export var spawn_position := Vector2(-20, 0)

## Every chat line heard, as [sender peer id, text].
var chat_log: Array = []

@onready var players: Node2D = $Players
@onready var spawner: MultiplayerSpawner = $Spawner

signal chat_heard(from: int, text: String)


func _ready() -> void:
	spawner.spawn_function = _spawn_player
	multiplayer.peer_connected.connect(_on_peer_connected)
	multiplayer.peer_disconnected.connect(_on_peer_disconnected)


func _spawn_player(data: Dictionary) -> Node:
	var p: Node2D = PLAYER.instantiate()
	p.name = str(data.id)
	p.position = data.position
	return p


func _on_peer_connected(id: int) -> void:
	if multiplayer.is_server():
		spawner.spawn({"id": id, "position": spawn_position})


func _on_peer_disconnected(id: int) -> void:
	if not multiplayer.is_server():
		return   # the server's nodes go away on their own
	var p := players.get_node_or_null(str(id))
	if p:
		p.queue_free()


## The node of a peer's player, or null.
func player_of(id: int) -> Node2D:
	return players.get_node_or_null(str(id)) as Node2D


## Client -> server: the direction this player wants to walk (unit vector or zero).
@rpc("any_peer", "call_remote", "unreliable_ordered")
func walk(direction: Vector2) -> void:
	var p := player_of(multiplayer.get_remote_sender_id())
	if p:
		p.velocity = direction.limit_length(1.0)


## Client -> server: a chat line; the server passes it on to everyone.
@rpc("any_peer", "call_remote", "reliable")
func say(text: String) -> void:
	if multiplayer.is_server():
		hear.rpc(multiplayer.get_remote_sender_id(), text.left(200))


## Server -> everyone: a chat line from a player.
@rpc("authority", "call_local", "reliable")
func hear(from: int, text: String) -> void:
	chat_log.append([from, text])
	chat_heard.emit(from, text)
