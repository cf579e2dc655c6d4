## The bytes of the WebSocket link (docs/protocol.md §17 and §11), in pure
## GDScript: web frames, the messages a client sends and receives, the
## HMAC-SHA256 proofs. Used by SustenetWebClient; no state.
extends RefCounted

const MAGIC := "SNET"
const VERSION := 3
const SUBPROTOCOL := "sustenet.v3"
const CHANNEL_RELIABLE := 0x00
const CHANNEL_UNRELIABLE := 0x01
const KIND_WEB_MASTER_HELLO := 0x08
const KIND_WEB_JOIN := 0x09
const KIND_WEB_RESUME := 0x0A
const KIND_REJECT := 0x7F
const MAX_UNRELIABLE_PAYLOAD := 1162

# Message types (§11).
const PING := 0x01
const PONG := 0x02
const DISCONNECT := 0x03
const LOGIN := 0x20
const LIST_CLUSTERS := 0x21
const JOIN := 0x22
const LOGIN_OK := 0x28
const LOGIN_FAILED := 0x29
const CLUSTER_LIST := 0x2A
const TICKET := 0x2B
const JOIN_FAILED := 0x2C
const DATA_TO_CLUSTER := 0x30
const ACK_TO_CLUSTER := 0x31
const WELCOME := 0x38
const DATA_TO_CLIENT := 0x39
const REDIRECT := 0x3A
const ACK_TO_CLIENT := 0x3B
const RESUMED := 0x3C
const RECORD_DATA := 0x01


## Appends little-endian integers and length-prefixed fields to a byte array.
class Writer:
	var b := PackedByteArray()

	func u8(v: int) -> Writer:
		b.append(v & 0xFF)
		return self

	func u16(v: int) -> Writer:
		var n := b.size()
		b.resize(n + 2)
		b.encode_u16(n, v)
		return self

	func u32(v: int) -> Writer:
		var n := b.size()
		b.resize(n + 4)
		b.encode_u32(n, v)
		return self

	func u64(v: int) -> Writer:
		var n := b.size()
		b.resize(n + 8)
		b.encode_s64(n, v)
		return self

	func raw(data: PackedByteArray) -> Writer:
		b.append_array(data)
		return self

	func bytes16(data: PackedByteArray) -> Writer:
		return u16(data.size()).raw(data)

	func bytes32(data: PackedByteArray) -> Writer:
		return u32(data.size()).raw(data)

	func str16(s: String) -> Writer:
		return bytes16(s.to_utf8_buffer())


## Reads what Writer writes; `ok` turns false on the first short or bad field.
class Reader:
	var b: PackedByteArray
	var at := 0
	var ok := true

	func _init(data: PackedByteArray, start := 0) -> void:
		b = data
		at = start

	func _take(n: int) -> bool:
		if not ok or at + n > b.size():
			ok = false
			return false
		return true

	func u8() -> int:
		if not _take(1):
			return 0
		at += 1
		return b[at - 1]

	func u16() -> int:
		if not _take(2):
			return 0
		at += 2
		return b.decode_u16(at - 2)

	func u32() -> int:
		if not _take(4):
			return 0
		at += 4
		return b.decode_u32(at - 4)

	func u64() -> int:
		if not _take(8):
			return 0
		at += 8
		return b.decode_s64(at - 8)

	func raw(n: int) -> PackedByteArray:
		if not _take(n):
			return PackedByteArray()
		at += n
		return b.slice(at - n, at)

	func bytes16() -> PackedByteArray:
		return raw(u16())

	func bytes32() -> PackedByteArray:
		return raw(u32())

	func str16() -> String:
		return bytes16().get_string_from_utf8()

	func boolean() -> bool:
		var v := u8()
		if v > 1:
			ok = false
		return v == 1

	## True when every byte was read and every field was good.
	func done() -> bool:
		return ok and at == b.size()


static func _header(kind: int) -> Writer:
	return Writer.new().raw(MAGIC.to_ascii_buffer()).u16(VERSION).u8(kind)


static func master_hello() -> PackedByteArray:
	return _header(KIND_WEB_MASTER_HELLO).b


static func join_hello(token: PackedByteArray, secret: PackedByteArray) -> PackedByteArray:
	return _header(KIND_WEB_JOIN).bytes16(token).raw(join_proof(secret)).b


static func resume_hello(session_id: int, secret: PackedByteArray, received: int, attempt: int) -> PackedByteArray:
	var proof := resume_proof(secret, session_id, received, attempt)
	return _header(KIND_WEB_RESUME).u64(session_id).u64(received).u64(attempt).raw(proof).b


static func join_proof(secret: PackedByteArray) -> PackedByteArray:
	return Crypto.new().hmac_digest(HashingContext.HASH_SHA256, secret, "sustenet v3 web join".to_utf8_buffer())


static func resume_proof(secret: PackedByteArray, session_id: int, received: int, attempt: int) -> PackedByteArray:
	var msg := Writer.new().raw("sustenet v3 web resume".to_utf8_buffer()).u64(session_id).u64(received).u64(attempt).b
	return Crypto.new().hmac_digest(HashingContext.HASH_SHA256, secret, msg)


## A refusal frame's [reason, message], or [] when `frame` is not one.
static func refusal(frame: PackedByteArray) -> Array:
	if frame.size() < 7 or frame.slice(0, 4).get_string_from_ascii() != MAGIC:
		return []
	var r := Reader.new(frame, 4)
	var version := r.u16()
	var kind := r.u8()
	if version != VERSION:
		return [8, "protocol version mismatch: we speak %d, the server speaks %d" % [VERSION, version]]
	if kind != KIND_REJECT:
		return [6, "unexpected handshake frame kind %d" % kind]
	var reason := r.u8()
	var text := r.str16()
	return [reason, text]


static func reliable(body: PackedByteArray) -> PackedByteArray:
	var f := PackedByteArray([CHANNEL_RELIABLE])
	f.append_array(body)
	return f


static func ping(value: int) -> PackedByteArray:
	return reliable(Writer.new().u8(PING).u64(value).b)


static func pong(value: int) -> PackedByteArray:
	return reliable(Writer.new().u8(PONG).u64(value).b)


static func goodbye(reason: int, message: String) -> PackedByteArray:
	return reliable(Writer.new().u8(DISCONNECT).u8(reason).str16(message).b)


static func login(username: String, secret: String) -> PackedByteArray:
	return reliable(Writer.new().u8(LOGIN).str16(username).bytes16(secret.to_utf8_buffer()).b)


static func list_clusters() -> PackedByteArray:
	return reliable(PackedByteArray([LIST_CLUSTERS]))


## `cluster_id` 0: the master picks.
static func join(cluster_id: int) -> PackedByteArray:
	var w := Writer.new().u8(JOIN)
	if cluster_id == 0:
		w.u8(0)
	else:
		w.u8(1).u64(cluster_id)
	return reliable(w.b)


static func data(command: int, payload: PackedByteArray) -> PackedByteArray:
	return reliable(Writer.new().u8(DATA_TO_CLUSTER).u16(command).bytes32(payload).b)


static func ack(received: int) -> PackedByteArray:
	return reliable(Writer.new().u8(ACK_TO_CLUSTER).u64(received).b)


static func unreliable(command: int, payload: PackedByteArray) -> PackedByteArray:
	return Writer.new().u8(CHANNEL_UNRELIABLE).u8(RECORD_DATA).u16(command).bytes16(payload).b


## A ClusterInfo (§11.5) as a Dictionary.
static func read_cluster(r: Reader) -> Dictionary:
	return {
		"id": r.u64(), "cluster_name": r.str16(), "address": r.str16(),
		"tcp_port": r.u16(), "udp_port": r.u16(), "players": r.u32(),
		"capacity": r.u32(), "locked": r.boolean(),
	}


## A Ticket (§11.5) as a Dictionary.
static func read_ticket(r: Reader) -> Dictionary:
	return {
		"cluster": read_cluster(r), "client_id": r.u64(), "expires_at_ms": r.u64(),
		"session_secret": r.raw(32), "token": r.bytes16(),
	}


## The data records of an unreliable frame's body: [[command, payload], ...],
## or null when malformed.
static func read_records(frame: PackedByteArray) -> Variant:
	var r := Reader.new(frame, 1)
	var out := []
	while r.ok and r.at < frame.size():
		var kind := r.u8()
		match kind:
			RECORD_DATA:
				var command := r.u16()
				out.append([command, r.bytes16()])
			2, 3, 4, 5:
				r.u64()
			_:
				return null
	return out if r.ok else null
