## mp_game.gd with unreliable @rpcs, for test_web_mp.gd: the same game over a native
## SustenetMultiplayerPeer and a SustenetWebMultiplayerPeer.
extends "res://tests/mp_game.gd"

## Values of shout() as it ran here, and from whom.
var shouts := []
## Values of beat() as it ran here.
var beats := []


@rpc("any_peer", "call_remote", "unreliable")
func shout(value: int) -> void:
	shouts.append([multiplayer.get_remote_sender_id(), value])


@rpc("authority", "call_remote", "unreliable_ordered", 3)
func beat(value: int) -> void:
	beats.append(value)
