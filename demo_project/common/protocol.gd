## Command numbers and payload helpers shared by the demo client and the demo cluster.
##
## Commands 1..3 match the Rust example plugin (`EchoChat`, used by `sustenet up`), so the
## demo client can chat on a `sustenet up` cluster too and `sustenet probe` works against
## the demo cluster. Use it with: const Protocol = preload("res://common/protocol.gd")
extends RefCounted

## Client -> cluster: the payload comes back to the sender on the same channel (ping).
const ECHO := 1
## Client -> cluster: UTF-8 chat text (reliable). Cluster -> clients: "name: text" (reliable).
const CHAT := 2
## Client -> cluster: kick me (testing); the cluster kicks with a message.
const KICK_ME := 3

## Client -> cluster: [x f32][y f32] (8 bytes, unreliable, ~20 Hz).
## Cluster -> clients: [player id s64][x f32][y f32] (16 bytes, unreliable).
const POS := 10
## Cluster -> clients: [player id s64] (reliable): that player left.
const PLAYER_LEFT := 12
## Cluster -> a new player: var_to_bytes({"id": int, "players": {id: {"name", "pos", "color"}},
## "region": {"cluster": String, "side": String, "border_x": float, "neighbour": String},
## "spawn": Vector2}). "region" only when the cluster serves one side of a border; "spawn" only
## on a fresh join (a player handed over from the neighbour keeps the position it has).
## The world's WELCOME also has "portal": {"pos": Vector2, "radius": float}; a dungeon
## instance's has "dungeon": {"name": String, "exit": Vector2, "radius": float}. On those two
## clusters "spawn" is always there: a player coming through the portal or the exit lands there.
const WELCOME := 14
## Cluster -> the others: var_to_bytes({"id": int, "name": String, "pos": Vector2, "color": Color}).
const PLAYER_JOINED := 15
## Cluster -> the player it is about to hand over (reliable, just before transfer_player):
## var_to_bytes({"to": String, "pos": Vector2}). It arrives before the client's `redirected`.
const HANDOFF := 16
## Cluster -> the players of a party at the portal or the dungeon's exit (reliable):
## var_to_bytes({"state": "opening" | "failed" | "leaving", "reason": String}). "opening": the
## cluster asked for a dungeon instance for the party; "failed": it could not be had (the reason
## is the master's or the agent's); "leaving": the player is being moved back to the world.
const PORTAL := 17

## The portal of the demo world (a cluster without --side and without --dungeon): a player whose
## position comes within PORTAL_RADIUS of PORTAL_POS, together with every player within
## PARTY_RADIUS of it, is moved to a fresh dungeon instance (docs/instances.md §8).
const PORTAL_POS := Vector2(320, 0)
const PORTAL_RADIUS := 24.0
const PARTY_RADIUS := 80.0
## A player opens the portal at most once in this many milliseconds.
const PORTAL_COOLDOWN_MS := 5000
## Where players coming back from a dungeon appear in the world (outside the portal).
const PORTAL_RETURN := Vector2(250, 0)
## The dungeons an instance can run (--dungeon=NAME; any other name is refused): where players
## arrive ("entry") and the exit back to the world ("exit", EXIT_RADIUS around it).
const DUNGEONS := {
	"crypt": {"entry": Vector2(250, 0), "exit": Vector2(-320, 0)},
	"cave": {"entry": Vector2(0, 150), "exit": Vector2(0, -170)},
}
const EXIT_RADIUS := 24.0

## World coordinates: the origin is the centre of the client's play area, x grows east.
## Two demo clusters split the world at x = border_x (default 0): west serves x < border_x,
## east x >= border_x. A player is handed over once it is BORDER_MARGIN past the border
## (hysteresis, so walking along the line does not bounce it back and forth).
const BORDER_MARGIN := 8.0
## Players stay within +-WORLD_HALF of the origin (the play area shows about that much).
const WORLD_HALF := Vector2(400, 200)

## The chat line that makes the demo cluster kick its sender (for testing).
const KICK_CHAT := "/kick"
## The message the demo cluster kicks with.
const KICK_MESSAGE := "kicked by the demo cluster: you typed /kick"


static func encode_pos(pos: Vector2) -> PackedByteArray:
	var b := PackedByteArray()
	b.resize(8)
	b.encode_float(0, pos.x)
	b.encode_float(4, pos.y)
	return b


static func decode_pos(b: PackedByteArray) -> Vector2:
	if b.size() < 8:
		return Vector2.ZERO
	return Vector2(b.decode_float(0), b.decode_float(4))


static func encode_player_pos(id: int, pos: Vector2) -> PackedByteArray:
	var b := PackedByteArray()
	b.resize(16)
	b.encode_s64(0, id)
	b.encode_float(8, pos.x)
	b.encode_float(12, pos.y)
	return b


static func encode_id(id: int) -> PackedByteArray:
	var b := PackedByteArray()
	b.resize(8)
	b.encode_s64(0, id)
	return b


## The handover state a cluster passes to transfer_player: var_to_bytes of this Dictionary.
static func encode_state(player_name: String, pos: Vector2, color: Color, from_cluster: String) -> PackedByteArray:
	return var_to_bytes({"name": player_name, "pos": pos, "color": color, "from": from_cluster})


## Whether player_connected's data is a handover state (var_to_bytes of a Dictionary) rather
## than the login name the master attaches on a fresh join (UTF-8 text never starts with the
## bytes 27, 0). Decode it with SustenetClient.decode_var(data).
static func is_state(data: PackedByteArray) -> bool:
	return data.size() >= 8 and data[0] == TYPE_DICTIONARY and data[1] == 0


## A stable colour for a player id.
static func color_for(id: int) -> Color:
	var h := float(absi(hash(id)) % 360) / 360.0
	return Color.from_hsv(h, 0.65, 0.95)


## Parses `--name=value` / `--flag` user arguments (those after `--`) into a Dictionary.
static func user_args() -> Dictionary:
	var out := {}
	for a in OS.get_cmdline_user_args():
		if not a.begins_with("--"):
			continue
		var kv := a.substr(2).split("=", true, 1)
		out[kv[0]] = kv[1] if kv.size() > 1 else "true"
	return out
