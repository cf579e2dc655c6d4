## A small game written the Godot way, used by the equivalence test (test_mp.gd): it runs
## unchanged over ENetMultiplayerPeer and over SustenetMultiplayerPeer. A MultiplayerSpawner
## spawns one player node per peer (authority: that peer), a MultiplayerSynchronizer on each
## replicates its position, and a few @rpc functions exercise any_peer vs authority,
## call_local, reliable order, get_remote_sender_id() and relay between clients.
## Nothing here knows which peer carries it.
extends Node

const CHATS := 20

var players: Node
var spawner: MultiplayerSpawner
## Server: sender id -> chat numbers in arrival order.
var chats := {}
## Server: sender ids whose chat came with a wrong get_remote_sender_id().
var bad_senders := []
## Times announce() ran on this peer, and from whom.
var announces := []
## Arguments of tick() as it ran here.
var ticks := []
## Client: [sender id, value] of each poke() received.
var pokes := []
## Server: client id -> its report.
var reports := {}
var finished := false


func _ready() -> void:
	players = Node.new()
	players.name = "Players"
	add_child(players)
	spawner = MultiplayerSpawner.new()
	spawner.name = "Spawner"
	spawner.spawn_function = _spawn_player
	add_child(spawner)
	spawner.spawn_path = spawner.get_path_to(players)


## Spawned on every peer from the server's spawner.spawn(data): data is a peer id (the node
## is named after it, that peer has authority), or {"name": ..., "authority": ...,
## "public": bool} for a node with another owner whose synchronizer may start hidden.
func _spawn_player(data: Variant) -> Node:
	var id: int = data if data is int else data.authority
	var p := Node2D.new()
	p.name = str(id) if data is int else data.name
	var sync := MultiplayerSynchronizer.new()
	sync.name = "Sync"
	var cfg := SceneReplicationConfig.new()
	cfg.add_property(NodePath(".:position"))
	cfg.property_set_replication_mode(NodePath(".:position"), SceneReplicationConfig.REPLICATION_MODE_ALWAYS)
	sync.replication_config = cfg
	sync.root_path = NodePath("..")
	if data is Dictionary:
		sync.public_visibility = data.public
	p.add_child(sync)
	p.set_multiplayer_authority(id, true)
	return p


## Where a player puts its own node (every peer can compute it).
static func target_position(id: int) -> Vector2:
	return Vector2(float(id % 997), 3.5)


func player_node(id: int) -> Node2D:
	return players.get_node_or_null(str(id)) as Node2D


@rpc("any_peer", "call_remote", "reliable")
func chat(n: int, sender_claim: int) -> void:
	var from := multiplayer.get_remote_sender_id()
	if from != sender_claim:
		bad_senders.append(from)
	if not chats.has(from):
		chats[from] = []
	chats[from].append(n)


@rpc("authority", "call_remote", "reliable")
func announce(text: String) -> void:
	announces.append([multiplayer.get_remote_sender_id(), text])


@rpc("authority", "call_local", "reliable")
func tick(n: int) -> void:
	ticks.append(n)


@rpc("any_peer", "call_remote", "reliable")
func poke(value: int) -> void:
	pokes.append([multiplayer.get_remote_sender_id(), value])


@rpc("any_peer", "call_remote", "reliable")
func report(outcome: Dictionary) -> void:
	if multiplayer.is_server():
		reports[multiplayer.get_remote_sender_id()] = outcome


@rpc("authority", "call_remote", "reliable")
func finish() -> void:
	finished = true
