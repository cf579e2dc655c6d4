## A Sustenet client in pure GDScript over [WebSocketPeer]: what a Godot web
## export uses, since a GDExtension's networking does not run in a browser.
## It has the methods and signals of [code]SustenetClient[/code] wherever
## they make sense, so one game script works with either; pick one with
## [method SustenetNet.create_client].
##
## It talks to a master and clusters that serve WebSocket players
## ([code][master] websocket_port[/code], [code][cluster] websocket_port[/code];
## [code]sustenet up[/code] serves them). TLS ([code]wss://[/code]) is the
## transport security; see docs/web.md.
## [codeblock]
## var net := SustenetWebClient.new()
## net.master_url = "wss://play.example.com:7256"
## add_child(net)
## net.login_succeeded.connect(func(_id): net.join_least_loaded_cluster())
## net.packet_received.connect(func(command, data, reliable): print(command))
## net.login("ann", "")
## [/codeblock]
class_name SustenetWebClient
extends Node

const Wire := preload("sustenet_web_wire.gd")

const REASON_REQUESTED := 1
const REASON_KICKED := 2
const REASON_TIMEOUT := 3
const REASON_SERVER_SHUTDOWN := 4
const REASON_SERVER_FULL := 5
const REASON_PROTOCOL_VIOLATION := 6
const REASON_AUTH_FAILED := 7
const REASON_VERSION_MISMATCH := 8
const REASON_SEND_QUEUE_FULL := 9
const REASON_HANDSHAKE_TIMEOUT := 10
const REASON_TOKEN_INVALID := 11
const REASON_TOKEN_EXPIRED := 12
const REASON_TOKEN_USED := 13
const REASON_TOKEN_WRONG_CLUSTER := 14
const REASON_REDIRECTED := 15
const REASON_CONNECTION_LOST := 16
const REASON_TAMPERED := 17
const REASON_TOO_MANY_HANDSHAKES := 18
const REASON_NO_CLUSTER := 19
const REASON_RECONNECT_TIMEOUT := 20
const REASON_RESUME_REFUSED := 21
const REASON_TOO_MANY_TICKETS := 22
## Largest payload of [method send_unreliable], in bytes.
const MAX_UNRELIABLE_PAYLOAD := 1162

const _REASON_TEXT := {
	1: "the connection was closed on purpose",
	2: "kicked by the server",
	3: "the peer stopped answering",
	4: "the server is shutting down",
	5: "the server is full",
	6: "protocol violation",
	7: "authentication failed",
	8: "protocol version mismatch",
	9: "too slow to keep up: the send queue filled up",
	10: "the handshake did not finish in time",
	11: "the connect token is invalid",
	12: "the connect token has expired",
	13: "the connect token was already used",
	14: "the connect token is for another cluster",
	15: "moved to another cluster",
	16: "the connection was lost",
	17: "too many tampered packets",
	18: "the server has too many pending handshakes",
	19: "no cluster is available",
	20: "the connection was lost and did not come back in time",
	21: "the reconnect was refused",
	22: "too many unused tickets",
}

## The master has answered the first request on a new connection.
signal connected
## The login was accepted.
signal login_succeeded(client_id: int)
## The login was refused; the connection stays open for another try.
signal login_failed(message: String)
## The cluster list: an Array of [SustenetWebClusterInfo] (only clusters
## that serve WebSocket players).
signal clusters_received(clusters: Array)
## Joined a cluster (also after a move to another cluster).
signal cluster_joined(cluster: SustenetWebClusterInfo, player_id: int)
## A join was refused; see the [code]REASON_*[/code] constants.
signal join_failed(reason: int, message: String)
## Data from the cluster.
signal packet_received(command: int, data: PackedByteArray, reliable: bool)
## The cluster moved this player to another cluster; [signal cluster_joined] follows.
signal redirected(cluster: SustenetWebClusterInfo)
## The cluster connection dropped; the client is reconnecting.
signal reconnecting(reason: int, message: String)
## The cluster connection is back after [param away_ms].
signal reconnected(away_ms: float)
## Left the cluster (for good), with the reason.
signal disconnected(reason: int, message: String)
## The master connection ended.
signal master_disconnected(reason: int, message: String)
## Something went wrong that no other signal tells (an unreachable master).
signal error(message: String)

## The master's WebSocket URL, e.g. [code]wss://play.example.com:7256[/code]
## ([code]sustenet up[/code] prints it).
@export var master_url := "wss://127.0.0.1:7256"
## A PEM certificate to trust for [code]wss://[/code] (the development
## certificate of [code]sustenet up[/code]); empty: the system's (in a
## browser, the browser's) trusted authorities.
@export_file("*.crt", "*.pem") var trusted_certificate := ""
## The name the server's certificate must carry; empty: the URL's host.
@export var tls_host_name := ""
## The user name [member auto_join] logs in with.
@export var username := ""
## When true, logs in as [member username] on entering the tree and joins
## the least loaded cluster as soon as the login succeeds.
@export var auto_join := false
## How long to keep trying to reconnect when the cluster connection drops,
## in seconds; 0 turns reconnecting off.
@export var reconnect_window_sec := 30.0
## Seconds between pings; a peer silent for [member timeout_sec] is lost.
@export var heartbeat_sec := 1.0
@export var timeout_sec := 10.0
## Most bytes of reliable messages kept for a reconnect (sent and not yet
## acknowledged, or sent while away); past that the session ends with
## [constant REASON_SEND_QUEUE_FULL] rather than lose one.
@export var resume_buffer_bytes := 262144

enum { IDLE, JOINING, PLAYING, AWAY, RESUMING, REDIRECTING }

var _master: WebSocketPeer = null
var _master_open := false
var _master_queue: Array[PackedByteArray] = []
var _master_heard := 0
var _master_next_ping := 0
var _master_goodbye: Array = []
var _master_answered := false
var _client_id := 0
var _join_after_login := false

var _cluster: WebSocketPeer = null
var _cluster_open := false
var _hello := PackedByteArray()
var _phase := IDLE
var _info: SustenetWebClusterInfo = null
var _ticket := {}
var _player_id := 0
var _session_id := 0
var _secret := PackedByteArray()
var _cluster_heard := 0
var _cluster_next_ping := 0
var _goodbye: Array = []
var _received := 0
var _acked_sent := 0
## Reliable messages sent in the session and not acknowledged: [command, payload],
## the first one is message number _log_base.
var _log: Array = []
var _log_base := 0
var _log_bytes := 0
var _attempt := 0
var _away_since := 0
var _retry_at := 0
var _redirect_at := 0
var _rtt_ms := 0.0
var _last_redirect_pause_ms := 0.0
## Where packets in the multiplayer peer's command range go (see attach_peer).
var _peer_packets := Callable()


func _ready() -> void:
	if auto_join and not username.is_empty():
		_join_after_login = true
		login(username, "")


func _exit_tree() -> void:
	if _cluster != null and _cluster_open:
		_cluster.send(Wire.goodbye(REASON_REQUESTED, ""))
		_cluster.close()
	if _master != null and _master_open:
		_master.send(Wire.goodbye(REASON_REQUESTED, ""))
		_master.close()


## A description of a [code]REASON_*[/code] code, fit to show a player.
static func reason_text(code: int) -> String:
	return _REASON_TEXT.get(code, "unknown reason")


## Turns bytes made by [method send_var] back into a value. Objects are
## never decoded: the data comes from the network.
static func decode_var(data: PackedByteArray) -> Variant:
	return bytes_to_var(data)


# --- commands ------------------------------------------------------------------------------

## Connects to the master. [method login] does this on its own.
func connect_to_master() -> Error:
	return _ensure_master()


## Logs in (connecting first if needed). Answered by [signal login_succeeded] or [signal login_failed].
func login(user: String, secret: String) -> Error:
	if user.is_empty():
		push_error("SustenetWebClient.login: the user name is empty")
		return ERR_INVALID_PARAMETER
	return _to_master(Wire.login(user, secret))


## Asks for the cluster list; answered by [signal clusters_received].
func request_clusters() -> Error:
	return _to_master(Wire.list_clusters())


## Joins the cluster with this id; answered by [signal cluster_joined] or [signal join_failed].
func join_cluster(cluster_id: int) -> Error:
	if cluster_id <= 0:
		push_error("SustenetWebClient.join_cluster: the cluster id must be positive")
		return ERR_INVALID_PARAMETER
	return _to_master(Wire.join(cluster_id))


## Joins the cluster the master picks: the least loaded one that serves
## WebSocket players and is not full.
func join_least_loaded_cluster() -> Error:
	return _to_master(Wire.join(0))


## The same as [method join_least_loaded_cluster]: a browser cannot ping
## clusters (no UDP), so there is no lowest-ping choice.
func join_best_cluster() -> Error:
	return join_least_loaded_cluster()


## Sends bytes to the cluster, reliably and in order (kept and sent again
## after a reconnect).
func send(command: int, data: PackedByteArray) -> Error:
	if not _check_send(command):
		return ERR_UNCONFIGURED if _phase == IDLE else ERR_INVALID_PARAMETER
	_log.append([command, data])
	_log_bytes += data.size() + 32
	if _log_bytes > resume_buffer_bytes and _phase != PLAYING:
		_end_session(REASON_SEND_QUEUE_FULL, "more than resume_buffer_bytes sent while away")
		return ERR_BUSY
	if _phase == PLAYING:
		_cluster.send(Wire.data(command, data))
		_trim_log_over_budget()
	return OK


## Sends bytes without delivery guarantee (on the same WebSocket; dropped
## while the connection is down or its outgoing buffer is backed up). At most
## [constant MAX_UNRELIABLE_PAYLOAD] bytes.
func send_unreliable(command: int, data: PackedByteArray) -> Error:
	if data.size() > MAX_UNRELIABLE_PAYLOAD:
		push_error("SustenetWebClient.send_unreliable: %d bytes, at most %d" % [data.size(), MAX_UNRELIABLE_PAYLOAD])
		return ERR_INVALID_PARAMETER
	if not _check_send(command):
		return ERR_UNCONFIGURED if _phase == IDLE else ERR_INVALID_PARAMETER
	if _phase == PLAYING and _cluster.get_current_outbound_buffered_amount() < 65536:
		_cluster.send(Wire.unreliable(command, data))
	return OK


## Sends any value (through [method @GlobalScope.var_to_bytes], without objects), reliably.
func send_var(command: int, value: Variant) -> Error:
	return send(command, var_to_bytes(value))


## Sends any value without delivery guarantee.
func send_var_unreliable(command: int, value: Variant) -> Error:
	return send_unreliable(command, var_to_bytes(value))


## Leaves the cluster; the login is kept.
func leave() -> Error:
	if _phase == IDLE:
		return OK
	_close_cluster(true)
	_end_session(REASON_REQUESTED, "left the cluster")
	return OK


## Closes every connection.
func disconnect_from_server() -> Error:
	leave()
	if _master != null:
		if _master_open:
			_master.send(Wire.goodbye(REASON_REQUESTED, ""))
		_master.close()
		_master = null
		_master_open = false
	return OK


## Closes the cluster connection at once without a goodbye, as a network
## failure would: the client then reconnects as it would after a real one
## (for testing a game's reconnect handling).
func simulate_connection_loss() -> void:
	if _cluster != null and _phase == PLAYING:
		_cluster.close(4000, "simulated connection loss")
		_lost("the connection was cut (simulated)")


## Hands every packet whose command number is [code]SustenetWebMultiplayerPeer.FIRST_RESERVED_COMMAND[/code]
## (65280) or more to [param receiver] ([code]func(command: int, data: PackedByteArray)[/code])
## instead of emitting [signal packet_received]; an empty [Callable] detaches. Called by
## [method SustenetWebMultiplayerPeer.create_client]: one peer per node, the last one wins.
func attach_peer(receiver: Callable) -> void:
	_peer_packets = receiver


## The receiver [method attach_peer] set (an empty [Callable] when none).
func get_attached_peer() -> Callable:
	return _peer_packets


## The client id from the last login (0 before).
func get_client_id() -> int:
	return _client_id


## Whether the client is on a cluster (also while it reconnects).
func is_in_cluster() -> bool:
	return _phase in [PLAYING, AWAY, RESUMING, REDIRECTING]


## Whether the cluster connection dropped and a reconnect is under way.
func is_reconnecting() -> bool:
	return _phase in [AWAY, RESUMING]


## The cluster this client is on, or null.
func get_cluster() -> SustenetWebClusterInfo:
	return _info if is_in_cluster() else null


## Last measured round trip to the cluster, in milliseconds (0 before the first).
func get_reliable_rtt_ms() -> float:
	return _rtt_ms


## The same as [method get_reliable_rtt_ms]: both channels share the WebSocket.
func get_unreliable_rtt_ms() -> float:
	return _rtt_ms


## How long the last move to another cluster paused the connection, in ms.
func get_last_redirect_pause_ms() -> float:
	return _last_redirect_pause_ms


# --- the master connection -------------------------------------------------------------------

## The goodbye a server's close frame carries, [reason, text], or [] for any other close. The
## server closes with code 4000 + the reason (docs/protocol.md §17.2) right after its Disconnect
## or Reject frame; Godot's WebSocketPeer drops frames that arrive together with the close, so
## that frame may be lost while the close code is not.
static func _goodbye_from_close(ws: WebSocketPeer) -> Array:
	var code := ws.get_close_code()
	if code <= 4000 or code >= 4256:
		return []
	var why := ws.get_close_reason()
	return [code - 4000, why if not why.is_empty() else reason_text(code - 4000)]


func _tls_options() -> TLSOptions:
	if trusted_certificate.is_empty():
		return TLSOptions.client(null, tls_host_name)
	var cert := X509Certificate.new()
	if cert.load(trusted_certificate) != OK:
		push_error("SustenetWebClient: cannot load trusted_certificate %s" % trusted_certificate)
		return TLSOptions.client(null, tls_host_name)
	return TLSOptions.client(cert, tls_host_name)


func _new_socket(url: String) -> WebSocketPeer:
	var ws := WebSocketPeer.new()
	ws.supported_protocols = PackedStringArray([Wire.SUBPROTOCOL])
	ws.inbound_buffer_size = 1 << 20
	ws.outbound_buffer_size = 1 << 20
	ws.max_queued_packets = 4096
	var tls: TLSOptions = _tls_options() if url.begins_with("wss://") else null
	var err := ws.connect_to_url(url, tls)
	if err != OK:
		push_error("SustenetWebClient: cannot connect to %s: %s" % [url, error_string(err)])
		return null
	return ws


func _ensure_master() -> Error:
	if _master != null:
		return OK
	if not (master_url.begins_with("wss://") or master_url.begins_with("ws://")):
		push_error("SustenetWebClient: master_url must start with wss:// or ws:// (got '%s')" % master_url)
		return ERR_UNCONFIGURED
	_master = _new_socket(master_url)
	if _master == null:
		return ERR_CANT_CONNECT
	_master_open = false
	_master_answered = false
	_master_goodbye = []
	_master_queue = [Wire.master_hello()]
	return OK


func _to_master(frame: PackedByteArray) -> Error:
	var err := _ensure_master()
	if err != OK:
		return err
	if _master_open:
		_master.send(frame)
	else:
		_master_queue.append(frame)
	return OK


func _poll_master(now: int) -> void:
	if _master == null:
		return
	_master.poll()
	var state := _master.get_ready_state()
	if state == WebSocketPeer.STATE_OPEN and not _master_open:
		_master_open = true
		_master_heard = now
		_master_next_ping = now + int(heartbeat_sec * 1000)
		for f in _master_queue:
			_master.send(f)
		_master_queue.clear()
	while _master != null and _master.get_available_packet_count() > 0:
		var f := _master.get_packet()
		_master_heard = now
		_on_master_frame(f)
	if _master == null:
		return
	if state == WebSocketPeer.STATE_CLOSED:
		var was_open := _master_open
		var code := _master.get_close_code()
		if _master_goodbye.is_empty():
			_master_goodbye = _goodbye_from_close(_master)
		_master = null
		_master_open = false
		if not was_open:
			error.emit("cannot reach the master at %s (close code %d)" % [master_url, code])
		elif _master_goodbye.is_empty():
			master_disconnected.emit(REASON_CONNECTION_LOST, "the master connection was lost")
		else:
			master_disconnected.emit(_master_goodbye[0], _master_goodbye[1])
		return
	if _master_open and now >= _master_next_ping:
		_master_next_ping = now + int(heartbeat_sec * 1000)
		if now - _master_heard > int(timeout_sec * 1000):
			_master_goodbye = [REASON_TIMEOUT, "the master stopped answering"]
			_master.close()
		else:
			_master.send(Wire.ping(now))


func _on_master_frame(f: PackedByteArray) -> void:
	var refused := Wire.refusal(f)
	if not refused.is_empty():
		_master_goodbye = refused
		return
	if f.is_empty() or f[0] != Wire.CHANNEL_RELIABLE:
		return
	var r := Wire.Reader.new(f, 1)
	var kind := r.u8()
	if not _master_answered and kind != Wire.PING and kind != Wire.PONG:
		_master_answered = true
		connected.emit()
	match kind:
		Wire.PING:
			_master.send(Wire.pong(r.u64()))
		Wire.PONG:
			pass
		Wire.DISCONNECT:
			var reason := r.u8()
			_master_goodbye = [reason, r.str16()]
		Wire.LOGIN_OK:
			_client_id = r.u64()
			login_succeeded.emit(_client_id)
			if _join_after_login:
				_join_after_login = false
				join_least_loaded_cluster()
		Wire.LOGIN_FAILED:
			login_failed.emit(r.str16())
		Wire.CLUSTER_LIST:
			var n := r.u16()
			var list := []
			for i in n:
				list.append(SustenetWebClusterInfo.from_dict(Wire.read_cluster(r)))
			if not r.ok:
				return
			if _phase == REDIRECTING:
				_follow_redirect(list)
			else:
				clusters_received.emit(list)
		Wire.TICKET:
			var t := Wire.read_ticket(r)
			if r.ok:
				_start_join(t, false)
		Wire.JOIN_FAILED:
			var reason := r.u8()
			join_failed.emit(reason, r.str16())


# --- the cluster connection ------------------------------------------------------------------

func _start_join(ticket: Dictionary, redirect: bool) -> void:
	if _cluster != null:
		_close_cluster(true)
	_ticket = ticket
	_info = SustenetWebClusterInfo.from_dict(ticket["cluster"])
	_secret = ticket["session_secret"]
	_received = 0
	_acked_sent = 0
	_attempt = 0
	if not redirect:
		_log.clear()
		_log_base = 0
		_log_bytes = 0
	_phase = REDIRECTING if redirect else JOINING
	_open_cluster(_info.url(), Wire.join_hello(ticket["token"], _secret))


func _open_cluster(url: String, hello: PackedByteArray) -> void:
	_cluster = _new_socket(url)
	_cluster_open = false
	_goodbye = []
	_hello = hello


func _close_cluster(say_goodbye: bool, reason := REASON_REQUESTED) -> void:
	if _cluster == null:
		return
	if say_goodbye and _cluster_open:
		_cluster.send(Wire.goodbye(reason, ""))
	_cluster.close()
	_cluster = null
	_cluster_open = false


func _poll_cluster(now: int) -> void:
	if _phase == AWAY:
		if now - _away_since > int(reconnect_window_sec * 1000):
			_end_session(REASON_RECONNECT_TIMEOUT, "did not reconnect within %.0f s" % reconnect_window_sec)
		elif now >= _retry_at:
			_attempt += 1
			_phase = RESUMING
			_open_cluster(_info.url(), Wire.resume_hello(_session_id, _secret, _received, _attempt))
		return
	if _cluster == null:
		return
	_cluster.poll()
	var state := _cluster.get_ready_state()
	if state == WebSocketPeer.STATE_OPEN and not _cluster_open:
		_cluster_open = true
		_cluster_heard = now
		_cluster_next_ping = now + int(heartbeat_sec * 1000)
		_cluster.send(_hello)
	while _cluster != null and _cluster.get_available_packet_count() > 0:
		var f := _cluster.get_packet()
		_cluster_heard = now
		_on_cluster_frame(f, now)
	if _cluster == null:
		return
	if state == WebSocketPeer.STATE_CLOSED:
		if _goodbye.is_empty():
			_goodbye = _goodbye_from_close(_cluster)
		_cluster = null
		_cluster_open = false
		_on_cluster_closed()
		return
	if _phase == PLAYING and now >= _cluster_next_ping:
		_cluster_next_ping = now + int(heartbeat_sec * 1000)
		if now - _cluster_heard > int(timeout_sec * 1000):
			_cluster.close()
			_lost("the cluster stopped answering")
			return
		_cluster.send(Wire.ping(Time.get_ticks_usec()))
		if _received != _acked_sent:
			_acked_sent = _received
			_cluster.send(Wire.ack(_received))


func _on_cluster_closed() -> void:
	match _phase:
		JOINING, REDIRECTING:
			var g := _goodbye if not _goodbye.is_empty() else [REASON_CONNECTION_LOST, "the cluster closed the connection"]
			_phase = IDLE
			join_failed.emit(g[0], g[1])
		RESUMING:
			if not _goodbye.is_empty():
				_end_session(_goodbye[0], _goodbye[1])
			else:
				_phase = AWAY
				_retry_at = Time.get_ticks_msec() + 500
		PLAYING:
			if _goodbye.is_empty():
				_lost("the connection was lost")
			else:
				_end_session(_goodbye[0], _goodbye[1])


## The connection dropped without a goodbye: reconnect, or end.
func _lost(why: String) -> void:
	_cluster = null
	_cluster_open = false
	if reconnect_window_sec <= 0.0:
		_end_session(REASON_CONNECTION_LOST, why)
		return
	_phase = AWAY
	_away_since = Time.get_ticks_msec()
	_retry_at = _away_since
	reconnecting.emit(REASON_CONNECTION_LOST, why)


func _end_session(reason: int, message: String) -> void:
	var was := _phase
	_close_cluster(false)
	_phase = IDLE
	_log.clear()
	_log_base = 0
	_log_bytes = 0
	if was != IDLE:
		disconnected.emit(reason, message)


func _on_cluster_frame(f: PackedByteArray, now: int) -> void:
	var refused := Wire.refusal(f)
	if not refused.is_empty():
		_goodbye = refused
		return
	if f.is_empty():
		return
	if f[0] == Wire.CHANNEL_UNRELIABLE:
		var records: Variant = Wire.read_records(f)
		if records != null and _phase == PLAYING:
			for rec in records:
				_deliver(rec[0], rec[1], false)
		return
	if f[0] != Wire.CHANNEL_RELIABLE:
		return
	var r := Wire.Reader.new(f, 1)
	match r.u8():
		Wire.PING:
			_cluster.send(Wire.pong(r.u64()))
		Wire.PONG:
			_rtt_ms = (Time.get_ticks_usec() - r.u64()) / 1000.0
		Wire.DISCONNECT:
			var reason := r.u8()
			_goodbye = [reason, r.str16()]
		Wire.WELCOME:
			_on_welcome(r.u64(), r.u64(), now)
		Wire.RESUMED:
			_on_resumed(r.u64(), now)
		Wire.DATA_TO_CLIENT:
			var command := r.u16()
			var payload := r.bytes32()
			if not r.done():
				return
			_received += 1
			if _received - _acked_sent >= 256:
				_acked_sent = _received
				_cluster.send(Wire.ack(_received))
			_deliver(command, payload, true)
		Wire.ACK_TO_CLIENT:
			_on_ack(r.u64())
		Wire.REDIRECT:
			var t := Wire.read_ticket(r)
			if r.ok:
				_on_redirect(t, now)


func _on_welcome(player_id: int, session_id: int, now: int) -> void:
	var was := _phase
	_player_id = player_id
	_session_id = session_id
	_phase = PLAYING
	# Messages sent while joining (or moving) are the session's first ones.
	_log_base = 0
	for m in _log:
		_cluster.send(Wire.data(m[0], m[1]))
	if was == REDIRECTING:
		_last_redirect_pause_ms = float(now - _redirect_at)
	cluster_joined.emit(_info, player_id)


func _on_resumed(had: int, now: int) -> void:
	if had < _log_base:
		_close_cluster(true, REASON_RESUME_REFUSED)
		_end_session(REASON_RESUME_REFUSED, "messages the cluster needs are no longer kept")
		return
	_on_ack(had)
	_phase = PLAYING
	for m in _log:
		_cluster.send(Wire.data(m[0], m[1]))
	reconnected.emit(float(now - _away_since))


func _on_ack(count: int) -> void:
	while _log_base < count and not _log.is_empty():
		var m: Array = _log.pop_front()
		_log_bytes -= m[1].size() + 32
		_log_base += 1


## While connected, the oldest kept messages are forgotten past the budget
## (a reconnect that would need them is then refused).
func _trim_log_over_budget() -> void:
	while _log_bytes > resume_buffer_bytes and _log.size() > 1:
		var m: Array = _log.pop_front()
		_log_bytes -= m[1].size() + 32
		_log_base += 1


func _on_redirect(ticket: Dictionary, now: int) -> void:
	_close_cluster(true, REASON_REDIRECTED)
	_redirect_at = now
	_ticket = ticket
	_info = SustenetWebClusterInfo.from_dict(ticket["cluster"])
	_phase = REDIRECTING
	_log.clear()
	_log_base = 0
	_log_bytes = 0
	# The ticket names the target's native ports: its WebSocket port is in
	# the master's web list.
	_to_master(Wire.list_clusters())


func _follow_redirect(list: Array) -> void:
	for c: SustenetWebClusterInfo in list:
		if c.id == _info.id:
			_ticket["cluster"]["tcp_port"] = c.tcp_port
			_ticket["cluster"]["udp_port"] = c.udp_port
			_info = c
			redirected.emit(c)
			_start_join(_ticket, true)
			return
	_end_session(REASON_NO_CLUSTER, "cluster %d does not serve WebSocket players" % _info.id)


func _deliver(command: int, data: PackedByteArray, reliable: bool) -> void:
	if command >= 0xFF00 and _peer_packets.is_valid():
		_peer_packets.call(command, data)
	else:
		packet_received.emit(command, data, reliable)


func _check_send(command: int) -> bool:
	if command < 0 or command > 65535:
		push_error("SustenetWebClient: command %d is not in 0..65535" % command)
		return false
	if _phase == IDLE:
		push_error("SustenetWebClient: not on a cluster (join one first)")
		return false
	return true


func _process(_delta: float) -> void:
	var now := Time.get_ticks_msec()
	_poll_master(now)
	_poll_cluster(now)
