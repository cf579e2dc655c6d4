extends Node
## The ENet reference of scripts/bench-compare.sh: Godot's ENetMultiplayerPeer as a
## server that relays every position it receives to the FANOUT peers that joined after
## the sender (in join order, wrapping around), and sends every echo back to its sender.
##
## Packets (little endian) are what sustenet-enet-bench sends: byte 0 is the kind
## (1 = position, 2 = echo); the rest is passed on as it came. Positions arrive and
## leave unreliable and unsequenced on channel 1, echoes reliable on channel 0, the
## channels ENetMultiplayerPeer itself uses for TRANSFER_MODE_UNRELIABLE and
## TRANSFER_MODE_RELIABLE. The relay queues with ENetPacketPeer.send and flushes the host
## once per frame (ENetMultiplayerPeer.put_packet would flush after every packet), with
## the process loop at full speed (no frame cap, no low-processor mode).
##
## Arguments after `--`: --port P (default 47900), --max-clients N (default 4095, ENet's
## limit), --fanout K (default 10), --lifetime S (default 600: exit 2 if still running),
## --frame-sleep-us U (default 100: the longest wait of an idle frame; 0 spins).
## Prints `RELAY ready port=P` once listening; exits 0 with a `RELAY summary {json}` line
## once every peer that connected has disconnected again. busy_us in the summary is the
## wall-clock time spent in poll, relay and flush while a peer was connected.

const KIND_POSITION := 1
const KIND_ECHO := 2
const CHANNEL_RELIABLE := 0
const CHANNEL_UNRELIABLE := 1

var port := 47900
var max_clients := 4095
var fanout := 10
var lifetime := 600.0
var frame_sleep_us := 100

var enet := ENetMultiplayerPeer.new()
var joined: Array[ENetPacketPeer] = []  # in join order; null once disconnected
var slot_of := {}  # peer id -> index in joined
var ever_connected := 0
var positions_in := 0
var positions_out := 0
var echoes := 0
var rejected := 0
var frames := 0
var busy_us := 0  # time spent in poll, relay and flush while a peer was connected
var started_ms := 0
var first_connect_us := 0


func _ready() -> void:
	# Full speed: no frame cap, low-processor mode off, and a frame pacing of
	# --frame-sleep-us (100: up to 10,000 frames per second) instead of the 6,900 µs that
	# headless Godot otherwise waits every frame (it cannot draw). A frame that has work
	# starts right after the previous one; an idle frame waits at most that long, so the
	# process's CPU time is its work rather than a spinning loop.
	Engine.max_fps = 0
	OS.low_processor_usage_mode = false
	if not _parse_args(OS.get_cmdline_user_args()):
		get_tree().quit(2)
		return
	OS.low_processor_usage_mode_sleep_usec = frame_sleep_us
	var err := enet.create_server(port, max_clients)
	if err != OK:
		printerr("RELAY error: create_server(%d, %d) failed: %s" % [port, max_clients, error_string(err)])
		get_tree().quit(1)
		return
	enet.peer_connected.connect(_on_peer_connected)
	enet.peer_disconnected.connect(_on_peer_disconnected)
	started_ms = Time.get_ticks_msec()
	print("RELAY ready port=%d max_clients=%d fanout=%d" % [port, max_clients, fanout])


func _parse_args(args: PackedStringArray) -> bool:
	var i := 0
	while i < args.size():
		var key := args[i]
		if i + 1 >= args.size() or not args[i + 1].is_valid_float():
			printerr("RELAY error: %s needs a number" % key)
			return false
		var value := args[i + 1]
		match key:
			"--port": port = value.to_int()
			"--max-clients": max_clients = value.to_int()
			"--fanout": fanout = value.to_int()
			"--lifetime": lifetime = value.to_float()
			"--frame-sleep-us": frame_sleep_us = value.to_int()
			_:
				printerr("RELAY error: unknown argument %s" % key)
				return false
		i += 2
	return port > 0 and port < 65536 and max_clients > 0 and fanout >= 0 and lifetime > 0 and frame_sleep_us >= 0


func _on_peer_connected(id: int) -> void:
	if ever_connected == 0:
		first_connect_us = Time.get_ticks_usec()
	slot_of[id] = joined.size()
	joined.append(enet.get_peer(id))
	ever_connected += 1


func _on_peer_disconnected(id: int) -> void:
	if not slot_of.has(id):
		return
	# The slot stays (join order is kept for everyone else); nothing is sent to it.
	joined[slot_of[id]] = null
	slot_of.erase(id)


func _process(_delta: float) -> void:
	frames += 1
	var t0 := Time.get_ticks_usec()
	enet.poll()
	while enet.get_available_packet_count() > 0:
		var from := enet.get_packet_peer()
		var data := enet.get_packet()
		if data.is_empty() or not slot_of.has(from):
			rejected += 1
			continue
		match data[0]:
			KIND_POSITION: _relay_position(slot_of[from], data)
			KIND_ECHO:
				joined[slot_of[from]].send(CHANNEL_RELIABLE, data, ENetPacketPeer.FLAG_RELIABLE)
				echoes += 1
			_: rejected += 1
	enet.host.flush()
	if not slot_of.is_empty():
		busy_us += Time.get_ticks_usec() - t0
	if ever_connected > 0 and slot_of.is_empty():
		_finish(0)
	elif Time.get_ticks_msec() - started_ms > lifetime * 1000.0:
		printerr("RELAY error: still running after --lifetime %s s" % lifetime)
		_finish(2)


func _relay_position(slot: int, data: PackedByteArray) -> void:
	positions_in += 1
	var n := joined.size()
	var flags := ENetPacketPeer.FLAG_UNSEQUENCED | ENetPacketPeer.FLAG_UNRELIABLE_FRAGMENT
	for k in range(1, mini(fanout, n - 1) + 1):
		var target := joined[(slot + k) % n]
		if target != null:
			target.send(CHANNEL_UNRELIABLE, data, flags)
			positions_out += 1


func _finish(code: int) -> void:
	var secs := (Time.get_ticks_msec() - started_ms) / 1000.0
	var summary := {
		"peers": ever_connected, "positions_in": positions_in, "positions_out": positions_out,
		"echoes": echoes, "rejected": rejected, "frames": frames, "seconds": secs,
		"busy_us": busy_us, "connected_s": (Time.get_ticks_usec() - first_connect_us) / 1e6,
	}
	print("RELAY summary %s" % JSON.stringify(summary))
	set_process(false)
	enet.close()
	get_tree().quit(code)
