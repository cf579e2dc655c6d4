## The messages of the multiplayer peer over Sustenet (docs/protocol.md §19), in pure
## GDScript, and the queue of received packets; used by SustenetWebMultiplayerPeer. The
## same bytes as the GDExtension's SustenetMultiplayerPeer (rust/godot/src/multiplayer_peer/wire.rs).
extends RefCounted

const FIRST_COMMAND := 0xFF00
const DATA := 0xFF00
const HELLO := 0xFF01
const WELCOME := 0xFF02
const REFUSED := 0xFF03
const BYE := 0xFF04
const MOVE := 0xFF05
const MOVE_READY := 0xFF06

const VERSION := 1
const FLAG_RELAY := 1
## Bytes of a Data header at most (mode, channel, seq).
const MAX_HEADER := 6
## Godot's TransferMode values, as carried in a Data header.
const MODE_UNRELIABLE := 0
const MODE_UNRELIABLE_ORDERED := 1
const MODE_RELIABLE := 2


## A Data payload: mode, channel, seq (ordered datagrams only), the packet.
static func encode_data(mode: int, channel: int, seq: int, packet: PackedByteArray) -> PackedByteArray:
	var out := PackedByteArray([mode, channel])
	if mode == MODE_UNRELIABLE_ORDERED:
		out.resize(6)
		out.encode_u32(2, seq)
	out.append_array(packet)
	return out


## Decodes a Data payload: {mode, channel, seq, packet}, or {error} when it is not one.
static func decode_data(p: PackedByteArray) -> Dictionary:
	if p.size() < 2:
		return {"error": "a peer message shorter than its header"}
	var mode := p[0]
	if mode > MODE_RELIABLE:
		return {"error": "unknown transfer mode %d" % mode}
	var start := 2
	var seq := 0
	if mode == MODE_UNRELIABLE_ORDERED:
		if p.size() < 6:
			return {"error": "a peer message shorter than its header"}
		seq = p.decode_u32(2)
		start = 6
	if p.size() == start:
		return {"error": "an empty SceneMultiplayer packet"}
	return {"mode": mode, "channel": p[1], "seq": seq, "packet": p.slice(start)}


## Decodes a Welcome: {peer_id, relay}, or {error}.
static func decode_welcome(p: PackedByteArray) -> Dictionary:
	if not p.is_empty() and p[0] != VERSION:
		return {"error": "peer protocol version %d (this client speaks %d)" % [p[0], VERSION]}
	if p.size() != 6:
		return {"error": "a malformed peer control message"}
	var id := p.decode_s32(1)
	if id < 2:
		return {"error": "a malformed peer control message"}
	return {"peer_id": id, "relay": (p[5] & FLAG_RELAY) != 0}


## The peer a SceneMultiplayer packet from the server adds (true) or removes (false) through
## its relay: [id, added], or [] when it is no such system message.
static func relay_peer_change(packet: PackedByteArray) -> Array:
	if packet.size() < 6 or (packet[0] & 0x07) != 7:
		return []
	match packet[1]:
		1:
			return [packet.decode_s32(2), true]
		2:
			return [packet.decode_s32(2), false]
	return []


## The peer a relayed SceneMultiplayer packet from the server comes from, or 0 when the
## packet is not a relayed one.
static func relay_source(packet: PackedByteArray) -> int:
	if packet.size() < 6 or (packet[0] & 0x07) != 7 or packet[1] != 3:
		return 0
	return packet.decode_s32(2)


## Received packets waiting for SceneMultiplayer, bounded in bytes; ordered datagrams older
## than the newest one seen on their channel are dropped.
class Inbox:
	var queue: Array = []  # of [channel, mode, packet]
	var bytes := 0
	var max_bytes := 16 << 20
	var newest := {}  # channel -> seq

	func _init(limit: int) -> void:
		max_bytes = limit

	## Whether [param seq] is newer than [param newest] (u32, wrapping: within 2^31 ahead).
	static func seq_newer(seq: int, newest: int) -> bool:
		var d := (seq - newest) & 0xFFFFFFFF
		return d != 0 and d < 0x80000000

	## Queues a packet: OK, ERR_OUT_OF_MEMORY when full, ERR_ALREADY_EXISTS when stale.
	func push(channel: int, mode: int, packet: PackedByteArray, seq: int) -> Error:
		if bytes + packet.size() > max_bytes:
			return ERR_OUT_OF_MEMORY
		if mode == MODE_UNRELIABLE_ORDERED:
			if newest.has(channel) and not seq_newer(seq, newest[channel]):
				return ERR_ALREADY_EXISTS
			newest[channel] = seq
		bytes += packet.size()
		queue.append([channel, mode, packet])
		return OK

	func head() -> Array:
		return queue[0] if not queue.is_empty() else []

	func pop() -> PackedByteArray:
		if queue.is_empty():
			return PackedByteArray()
		var p: Array = queue.pop_front()
		bytes -= p[2].size()
		return p[2]

	func clear() -> void:
		queue.clear()
		bytes = 0
		newest.clear()
