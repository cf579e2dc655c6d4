## One player floods the cluster faster than its game drains; the flooder alone pays:
##   godot --headless --path demo_project -s res://tests/test_inbound_flood.gd -- \
##     --key-dir=DIR --key-name=test_cluster --master-port=P --cluster-port=P2
## The SustenetCluster turns only 16 events a frame into signals and lets a player have 200
## packets waiting. The flooder's unreliable flood is dropped past that (counted by
## get_dropped_packets), and its reliable flood gets it disconnected with REASON_KICKED,
## which the game hears (player_disconnected). Meanwhile a second player's 300 numbered
## reliable packets (3 a frame, at most 30 waiting for the game) all arrive, once each and in
## order, and it stays connected.
extends "res://tests/test_base.gd"

const VICTIM_PACKETS := 300
const FLOOD_CMD := 70
const VICTIM_CMD := 71

var victim: SustenetClient
var victim_pid := 0
var victim_disc := []
var flooder_disc := []
var received := []          # victim sequence numbers, as the cluster's game saw them
var left := {}              # player id -> reason, from player_disconnected


func _initialize() -> void:
	begin("inbound_flood", 90)
	world_cluster_setup = func(c: SustenetCluster) -> void:
		c.events_per_frame = 16
		c.max_pending_packets_per_player = 200
	_run()


func _run() -> void:
	if not await start_world():
		await stop_world()
		await finish()
		return
	var flooder_pid := world_cluster_pid
	w_cluster.packet_received.connect(func(pid, cmd, data, _rel):
		if pid == victim_pid and cmd == VICTIM_CMD:
			received.append(data.decode_u32(0)))
	w_cluster.player_disconnected.connect(func(pid, reason): left[pid] = reason)
	w_client.disconnected.connect(func(r, m): flooder_disc.append([r, m]))
	victim = SustenetClient.new()
	victim.disconnected.connect(func(r, m): victim_disc.append([r, m]))
	victim_pid = await join_world(victim, "victim")
	if victim_pid == 0:
		await stop_world()
		await finish()
		return

	# 1. An unreliable flood: far more than 200 packets at once, dropped past the limit.
	var blob := PackedByteArray()
	blob.resize(200)
	for i in 3000:
		w_client.send_unreliable(FLOOD_CMD, blob)
	# 2. The victim plays on, 3 reliable packets a frame and never more than 30 waiting for the
	# game: a well-behaved player, however slowly this machine lets the game drain.
	var sent := 0
	while sent < VICTIM_PACKETS:
		await wait_until(func(): return sent - received.size() <= 27, 20)
		for i in 3:
			var b := PackedByteArray()
			b.resize(4)
			b.encode_u32(0, sent)
			victim.send(VICTIM_CMD, b)
			sent += 1
		if sent == 99:
			# 3. A reliable flood from the same flooder: over 200 waiting, so it is kicked.
			for i in 2000:
				w_client.send(FLOOD_CMD, blob)
		await process_frame
	await wait_until(func(): return received.size() >= VICTIM_PACKETS and left.has(flooder_pid), 30)

	check(w_cluster.get_dropped_packets() > 0,
		"the flooder's packets over the limit were dropped or refused (%d)" % w_cluster.get_dropped_packets())
	check(left.get(flooder_pid, -1) == SustenetClient.REASON_KICKED,
		"the game heard the flooder leave, kicked (reason %s)" % [left.get(flooder_pid, "none")])
	# The kick's goodbye may be lost to the reset of a connection that still has unread data
	# coming in (the flood): then the client sees the link drop and its resume refused.
	await wait_until(func(): return not flooder_disc.is_empty(), 20)
	check(not flooder_disc.is_empty() and not w_client.is_in_cluster(),
		"the flooder's client was disconnected %s" % [flooder_disc])
	var in_order := true
	for i in received.size():
		if received[i] != i:
			in_order = false
			break
	check(received.size() == VICTIM_PACKETS and in_order,
		"the other player's %d reliable packets all arrived once and in order (%d)" % [VICTIM_PACKETS, received.size()])
	check(victim_disc.is_empty() and victim.is_in_cluster() and not left.has(victim_pid),
		"the other player is still connected %s" % [victim_disc])
	victim.disconnect_from_server()
	await stop_world()
	await finish()
