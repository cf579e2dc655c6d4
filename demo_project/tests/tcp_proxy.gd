## A TCP proxy for the in-engine tests: relays every connection to an upstream port,
## and can be cut (every relayed connection closed at once, what it held in flight lost,
## new connections closed as soon as they arrive) and restored, like a network that drops.
extends Node

## Returns the upstream TCP port; asked for each new connection.
var upstream: Callable
var down := false
var _server := TCPServer.new()
var _pairs: Array = []   # [inbound StreamPeerTCP, outbound StreamPeerTCP, pending bytes]


func listen() -> int:
	var err := _server.listen(0, "127.0.0.1")
	if err != OK:
		return 0
	return _server.get_local_port()


func cut() -> void:
	down = true
	for p in _pairs:
		p[0].disconnect_from_host()
		p[1].disconnect_from_host()
	_pairs.clear()


func restore() -> void:
	down = false


func connections() -> int:
	return _pairs.size()


func _process(_delta: float) -> void:
	while _server.is_connection_available():
		var inbound := _server.take_connection()
		if down:
			inbound.disconnect_from_host()
			continue
		var outbound := StreamPeerTCP.new()
		outbound.connect_to_host("127.0.0.1", upstream.call())
		_pairs.append([inbound, outbound, PackedByteArray()])
	var alive: Array = []
	for p in _pairs:
		var a: StreamPeerTCP = p[0]
		var b: StreamPeerTCP = p[1]
		a.poll()
		b.poll()
		if a.get_status() != StreamPeerTCP.STATUS_CONNECTED or b.get_status() == StreamPeerTCP.STATUS_ERROR \
				or b.get_status() == StreamPeerTCP.STATUS_NONE:
			a.disconnect_from_host()
			b.disconnect_from_host()
			continue
		var n := a.get_available_bytes()
		if n > 0:
			var got: Array = a.get_partial_data(n)
			if got[0] == OK:
				p[2].append_array(got[1])
		if b.get_status() == StreamPeerTCP.STATUS_CONNECTED:
			if not p[2].is_empty():
				b.put_data(p[2])
				p[2] = PackedByteArray()
			var m := b.get_available_bytes()
			if m > 0:
				var back: Array = b.get_partial_data(m)
				if back[0] == OK:
					a.put_data(back[1])
		alive.append(p)
	_pairs = alive
