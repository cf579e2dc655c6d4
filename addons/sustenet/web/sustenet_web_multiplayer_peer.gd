## Godot's high-level multiplayer ([code]@rpc[/code], [MultiplayerSpawner],
## [MultiplayerSynchronizer]) over a [SustenetWebClient], in pure GDScript: the client
## side of [code]SustenetMultiplayerPeer[/code] for web exports, where the GDExtension does
## not run. It speaks the same messages as the native client peer (docs/protocol.md §19), so a
## cluster whose game runs [code]SustenetMultiplayerPeer.create_server[/code] serves native
## and web players alike. The server is peer 1; this peer's id comes from the cluster.
## [codeblock]
## var net := SustenetNet.create_client({"websocket_url": "wss://play.example.com:7256"})
## add_child(net)
## multiplayer.multiplayer_peer = SustenetNet.create_multiplayer_peer(net)
## net.login("ann", "")   # then join a cluster; connected_to_server follows the welcome
## [/codeblock]
## What differs from the native peer: "unreliable" packets travel on the WebSocket too (in
## order, never lost in transit, but behind anything sent before them); see docs/web.md.
class_name SustenetWebMultiplayerPeer
extends MultiplayerPeerExtension

const Wire := preload("sustenet_web_peer_wire.gd")

## The first Sustenet command number the peer uses; it owns this one and every one above
## (up to 65535). Keep the game's own [method SustenetWebClient.send] commands below it.
const FIRST_RESERVED_COMMAND := 0xFF00
## The largest packet the peer carries ([method get_max_packet_size]), in bytes.
const MAX_PACKET_SIZE := 65499
## The largest unreliable packet sent as one unreliable record, in bytes; a larger one is
## sent on the reliable channel instead.
const MAX_DATAGRAM_PACKET_SIZE := 1156
## Most client events waiting for [method poll]; one more closes the peer with an error
## (it is not being polled: assign it to [member MultiplayerAPI.multiplayer_peer]).
const MAX_EVENTS := 65536
## How often the hello is sent again while the cluster has not answered, in ms.
const HELLO_EVERY_MS := 1000

## Most bytes of received packets waiting for [method poll]'s caller (at least 65,536;
## read by [method create_client]); past it the connection is closed with an error.
var max_queued_bytes := 16 << 20

var _client: SustenetWebClient = null
var _status := CONNECTION_DISCONNECTED
var _unique_id := 0
var _relay := false
var _joined := false
var _player_id := 0
var _last_hello_ms := -1
var _relayed := {}  # peer ids SceneMultiplayer learned through the cluster's relay
var _events: Array = []
var _overflowed := false
var _inbox := Wire.Inbox.new(16 << 20)
var _out_seq := PackedInt64Array()
var _target_peer := 0
var _transfer_mode := TRANSFER_MODE_RELIABLE
var _transfer_channel := 0
var _refuse_new := false
var _warned_large := false
var _stats := {"polls": 0, "poll_usec": 0, "sent_packets": 0, "sent_bytes": 0,
		"received_packets": 0, "received_bytes": 0}


func _init() -> void:
	_out_seq.resize(256)


## Makes this peer the client of [param client]: it is
## [constant MultiplayerPeer.CONNECTION_CONNECTING] until the cluster welcomes it (right
## after [signal SustenetWebClient.cluster_joined], or right away when the client is on a
## cluster already), then [constant MultiplayerPeer.CONNECTION_CONNECTED] with the server
## as peer 1. Returns [constant ERR_ALREADY_IN_USE] when the peer is active (call
## [method MultiplayerPeer.close] first) and [constant ERR_INVALID_PARAMETER] for null.
## One peer per node.
func create_client(client: SustenetWebClient) -> Error:
	if client == null:
		push_error("SustenetWebMultiplayerPeer.create_client: the SustenetWebClient is null")
		return ERR_INVALID_PARAMETER
	if _client != null:
		push_error("SustenetWebMultiplayerPeer.create_client: the peer is active; close() it first")
		return ERR_ALREADY_IN_USE
	_limit_sync_packets(client)
	_reset(CONNECTION_CONNECTING)
	_client = client
	_joined = client.is_in_cluster()
	_player_id = client.get_client_id()
	client.attach_peer(_on_packet)
	client.cluster_joined.connect(_on_joined)
	client.redirected.connect(_on_redirected)
	client.disconnected.connect(_on_disconnected)
	client.join_failed.connect(_on_join_failed)
	client.login_failed.connect(_on_login_failed)
	client.master_disconnected.connect(_on_join_failed)
	_poll_client()
	return OK


## The client's own player id for its own peer id; -1 otherwise.
func get_player_id(peer_id: int) -> int:
	if _client != null and peer_id == _unique_id and peer_id != 0 and _player_id != 0:
		return _player_id
	return -1


## 0: only the server knows other players' peer ids.
func get_peer_id(_player: int) -> int:
	return 0


## Counters since the peer was made: [code]polls[/code], [code]poll_usec[/code],
## [code]sent_packets[/code], [code]sent_bytes[/code], [code]received_packets[/code],
## [code]received_bytes[/code] (as [code]SustenetMultiplayerPeer.get_stats[/code]).
func get_stats() -> Dictionary:
	return _stats.duplicate()


# --- MultiplayerPeer -----------------------------------------------------------------------

func _get_available_packet_count() -> int:
	return _inbox.queue.size()


func _get_max_packet_size() -> int:
	return MAX_PACKET_SIZE


func _get_packet_script() -> PackedByteArray:
	return _inbox.pop()


func _put_packet_script(buffer: PackedByteArray) -> Error:
	if _status != CONNECTION_CONNECTED:
		push_error("SustenetWebMultiplayerPeer: not connected")
		return ERR_UNCONFIGURED
	if buffer.is_empty() or buffer.size() > MAX_PACKET_SIZE:
		push_error("SustenetWebMultiplayerPeer: a packet of %d bytes (1..%d)" % [buffer.size(), MAX_PACKET_SIZE])
		return ERR_INVALID_PARAMETER
	if _target_peer == -1:
		return OK  # everyone but the server: nobody a client reaches
	if _target_peer > 1 or _target_peer < -1:
		push_error("SustenetWebMultiplayerPeer: a client sends to the server (1) only, not to peer %d; other peers are reached through the server relay" % _target_peer)
		return ERR_INVALID_PARAMETER
	var mode := _transfer_mode
	var seq := 0
	if mode == TRANSFER_MODE_UNRELIABLE_ORDERED:
		_out_seq[_transfer_channel] = (_out_seq[_transfer_channel] + 1) & 0xFFFFFFFF
		seq = _out_seq[_transfer_channel]
	var payload := Wire.encode_data(mode, _transfer_channel, seq, buffer)
	var fits := payload.size() <= SustenetWebClient.MAX_UNRELIABLE_PAYLOAD
	if not fits and mode != TRANSFER_MODE_RELIABLE and not _warned_large:
		_warned_large = true
		push_warning("SustenetWebMultiplayerPeer: an unreliable packet of %d bytes does not fit a datagram (%d bytes); sent reliably. Set multiplayer.max_sync_packet_size to SustenetWebMultiplayerPeer.MAX_DATAGRAM_PACKET_SIZE" % [buffer.size(), MAX_DATAGRAM_PACKET_SIZE])
	var err: Error
	if mode == TRANSFER_MODE_RELIABLE or not fits:
		err = _client.send(Wire.DATA, payload)
	else:
		err = _client.send_unreliable(Wire.DATA, payload)
	if err != OK:
		return ERR_BUSY
	_stats["sent_packets"] += 1
	_stats["sent_bytes"] += payload.size()
	return OK


func _get_packet_channel() -> int:
	var h := _inbox.head()
	return h[0] if not h.is_empty() else 0


func _get_packet_mode() -> TransferMode:
	var h := _inbox.head()
	if h.is_empty():
		return TRANSFER_MODE_RELIABLE
	var mode: int = h[1]
	return mode as TransferMode


func _set_transfer_channel(channel: int) -> void:
	if channel < 0 or channel > 255:
		push_error("SustenetWebMultiplayerPeer: transfer channel %d is out of range (0..255)" % channel)
		return
	_transfer_channel = channel


func _get_transfer_channel() -> int:
	return _transfer_channel


func _set_transfer_mode(mode: TransferMode) -> void:
	_transfer_mode = mode


func _get_transfer_mode() -> TransferMode:
	return _transfer_mode


func _set_target_peer(peer: int) -> void:
	_target_peer = peer


func _get_packet_peer() -> int:
	return 1 if not _inbox.queue.is_empty() else 0


func _is_server() -> bool:
	return false


func _poll() -> void:
	var start := Time.get_ticks_usec()
	_poll_client()
	_stats["polls"] += 1
	_stats["poll_usec"] += Time.get_ticks_usec() - start


func _close() -> void:
	if _client != null and is_instance_valid(_client) and _joined:
		_client.send(Wire.BYE, PackedByteArray())
	_detach()
	_reset(CONNECTION_DISCONNECTED)


func _disconnect_peer(peer: int, force: bool) -> void:
	if _client == null:
		return
	if peer != 1:
		push_error("SustenetWebMultiplayerPeer: a client is connected to peer 1 only")
		return
	var was_connected := _status == CONNECTION_CONNECTED
	_close()
	if was_connected and not force:
		peer_disconnected.emit(1)


func _get_unique_id() -> int:
	return _unique_id


func _set_refuse_new_connections(enable: bool) -> void:
	_refuse_new = enable


func _is_refusing_new_connections() -> bool:
	return _refuse_new


func _is_server_relay_supported() -> bool:
	return _relay


func _get_connection_status() -> ConnectionStatus:
	return _status


# --- events from the SustenetWebClient -----------------------------------------------------

func _queue(ev: Array) -> void:
	if _events.size() >= MAX_EVENTS:
		_overflowed = true
		return
	_events.append(ev)


func _on_packet(command: int, data: PackedByteArray) -> void:
	_queue(["packet", command, data])


func _on_joined(_cluster: SustenetWebClusterInfo, player_id: int) -> void:
	_queue(["joined", player_id])


func _on_redirected(_cluster: SustenetWebClusterInfo) -> void:
	_queue(["redirected"])


func _on_disconnected(_reason: int, _message: String) -> void:
	_queue(["disconnected"])


func _on_join_failed(_reason: int, _message: String) -> void:
	_queue(["join_failed"])


func _on_login_failed(_message: String) -> void:
	_queue(["join_failed"])


func _poll_client() -> void:
	if _client != null and not is_instance_valid(_client):
		push_error("SustenetWebMultiplayerPeer: its SustenetWebClient was freed; closing")
		_lose_server()
		return
	while not _events.is_empty() and _client != null:
		_client_event(_events.pop_front())
	if _overflowed and _client != null:
		push_error("SustenetWebMultiplayerPeer: packets were lost while the peer was not polled; closing")
		_lose_server()
		return
	_hello_if_due()


func _client_event(ev: Array) -> void:
	match ev[0]:
		"joined":
			_joined = true
			_player_id = ev[1]
			_last_hello_ms = -1
			_hello_if_due()
		"redirected":
			_leave_old_cluster()
		"disconnected":
			_lose_server()
		"join_failed":
			# Only a peer still waiting for its first cluster gives up (connection_failed).
			if not _joined and _status == CONNECTION_CONNECTING:
				_lose_server()
		"packet":
			_client_packet(ev[1], ev[2])


## Sends the hello while connecting, once a second until the welcome.
func _hello_if_due() -> void:
	if _status != CONNECTION_CONNECTING or not _joined or _client == null:
		return
	var now := Time.get_ticks_msec()
	if _last_hello_ms >= 0 and now - _last_hello_ms < HELLO_EVERY_MS:
		return
	_last_hello_ms = now
	_client.send(Wire.HELLO, PackedByteArray([Wire.VERSION]))


## The old cluster's world ends (a move): peer 1 goes, and comes back with the new welcome.
func _leave_old_cluster() -> void:
	_joined = false
	var relayed := _relayed.keys()
	_relayed.clear()
	var was_connected := _status == CONNECTION_CONNECTED
	_inbox.clear()
	_out_seq.fill(0)
	_status = CONNECTION_CONNECTING
	if was_connected:
		for p in relayed:
			peer_disconnected.emit(p)
		peer_disconnected.emit(1)


## The server is gone for good: peer 1 leaves, the peer is disconnected.
func _lose_server() -> void:
	var was_connected := _status == CONNECTION_CONNECTED
	_detach()
	_inbox.clear()
	if was_connected:
		peer_disconnected.emit(1)
	_status = CONNECTION_DISCONNECTED


func _client_packet(command: int, payload: PackedByteArray) -> void:
	match command:
		Wire.WELCOME:
			var w := Wire.decode_welcome(payload)
			if w.has("error"):
				push_error("SustenetWebMultiplayerPeer: the cluster sent %s" % w["error"])
			elif _status == CONNECTION_CONNECTING:
				_unique_id = w["peer_id"]
				_relay = w["relay"]
				_status = CONNECTION_CONNECTED
				peer_connected.emit(1)
		Wire.REFUSED:
			if _status == CONNECTION_CONNECTING:
				push_warning("SustenetWebMultiplayerPeer: the cluster refuses new peers")
				_lose_server()
		Wire.BYE:
			_lose_server()
		Wire.MOVE:
			if _status == CONNECTION_CONNECTED:
				_leave_old_cluster()
				# Nothing is sent after this: the status is not CONNECTED.
				_client.send(Wire.MOVE_READY, PackedByteArray())
				# Should the move fail, the hello a second later brings this peer back
				# into the old cluster's game.
				_joined = true
				_last_hello_ms = Time.get_ticks_msec()
		Wire.DATA:
			if _status == CONNECTION_CONNECTED:
				_client_data(payload)


func _client_data(payload: PackedByteArray) -> void:
	var d := Wire.decode_data(payload)
	if d.has("error"):
		push_error("SustenetWebMultiplayerPeer: the cluster sent %s" % d["error"])
		return
	var packet: PackedByteArray = d["packet"]
	var change := Wire.relay_peer_change(packet)
	if not change.is_empty():
		if change[1]:
			_relayed[change[0]] = true
		else:
			_relayed.erase(change[0])
	var source := Wire.relay_source(packet)
	if source != 0 and not _relayed.has(source):
		# From a peer the cluster has not announced (yet, or any more): SceneMultiplayer
		# would refuse it with an error (the native peer drops these too).
		return
	var pushed := _inbox.push(d["channel"], d["mode"], packet, d["seq"])
	if pushed == OK:
		_stats["received_packets"] += 1
		_stats["received_bytes"] += packet.size()
	elif pushed == ERR_OUT_OF_MEMORY:
		push_error("SustenetWebMultiplayerPeer: more than max_queued_bytes waiting; closing")
		_lose_server()


func _detach() -> void:
	if _client == null:
		return
	if is_instance_valid(_client):
		if _client.get_attached_peer() == _on_packet:
			_client.attach_peer(Callable())
		for pair in [[_client.cluster_joined, _on_joined], [_client.redirected, _on_redirected],
				[_client.disconnected, _on_disconnected], [_client.join_failed, _on_join_failed],
				[_client.login_failed, _on_login_failed], [_client.master_disconnected, _on_join_failed]]:
			if pair[0].is_connected(pair[1]):
				pair[0].disconnect(pair[1])
	_client = null
	_joined = false
	_events.clear()
	_overflowed = false


func _reset(status: ConnectionStatus) -> void:
	_inbox = Wire.Inbox.new(maxi(max_queued_bytes, 1 << 16))
	_out_seq.fill(0)
	_status = status
	_unique_id = 0
	_relay = false
	_relayed.clear()


## Lowers the node's SceneMultiplayer packet limits to what the peer carries.
func _limit_sync_packets(node: Node) -> void:
	if not node.is_inside_tree():
		return
	var sm := node.get_multiplayer() as SceneMultiplayer
	if sm == null:
		return
	sm.max_sync_packet_size = mini(sm.max_sync_packet_size, MAX_DATAGRAM_PACKET_SIZE)
	sm.max_delta_packet_size = mini(sm.max_delta_packet_size, MAX_PACKET_SIZE)
