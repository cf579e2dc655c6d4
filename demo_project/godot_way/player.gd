## One player's avatar. The server owns it (authority 1) and moves it; its
## MultiplayerSynchronizer ("Sync") replicates `position` to the clients at 20 Hz.
## The node is named after the peer id of the player it belongs to.
extends Node2D

## Units per second.
const SPEED := 40.0

## The direction the player asked for (server side).
var velocity := Vector2.ZERO


func peer_id() -> int:
	return name.to_int()


func _physics_process(delta: float) -> void:
	if multiplayer.is_server():
		position += velocity * SPEED * delta
