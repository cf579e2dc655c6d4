## Plays against the demo cluster (cluster/cluster.gd, e.g. the headless export):
##   godot --headless --path demo_project -s res://tests/test_demo_cluster.gd -- \
##     --master-port=P --master-key=BASE64 --cluster-id=ID
## Two clients join; checks WELCOME / PLAYER_JOINED, the position relay, the chat
## broadcast, the ECHO command, and that "/kick" kicks with the demo's message and the
## other player is told (PLAYER_LEFT).
extends "res://tests/test_base.gd"

const Protocol = preload("res://common/protocol.gd")

var a: SustenetClient
var b: SustenetClient
var got_a := {}   # command -> [last data, reliable]
var got_b := {}
var chat_b := []
var a_pid := 0
var b_pid := 0
var a_disc := []


func make(user: String, got: Dictionary) -> SustenetClient:
	var c := SustenetClient.new()
	c.master_port = arg("master-port", 6256)
	c.master_public_key = arg("master-key", "")
	c.login_succeeded.connect(func(_id): c.join_cluster(arg("cluster-id", 0)))
	c.packet_received.connect(func(cmd, data, rel): got[cmd] = [data, rel])
	c.error.connect(func(m): print("demo: error: ", m))
	c.join_failed.connect(func(r, m): print("demo: join_failed: ", r, " ", m))
	root.add_child(c)
	c.login(user, "")
	return c


func _initialize() -> void:
	begin("demo_cluster", 60)
	_run()


func _run() -> void:
	a = make("alice", got_a)
	a.cluster_joined.connect(func(_i, pid): a_pid = pid)
	a.disconnected.connect(func(r, m): a_disc = [r, m])
	if not check(await wait_until(func(): return a_pid != 0 and got_a.has(Protocol.WELCOME), 15), "alice joined and got WELCOME"):
		await finish()
		return
	var w = SustenetClient.decode_var(got_a[Protocol.WELCOME][0])
	check(w is Dictionary and w.get("id") == a_pid and w.get("players") is Dictionary,
			"WELCOME holds alice's id and the player table (%s)" % [w])
	b = make("bob", got_b)
	b.cluster_joined.connect(func(_i, pid): b_pid = pid)
	b.packet_received.connect(func(cmd, data, _rel):
		if cmd == Protocol.CHAT: chat_b.append(data.get_string_from_utf8()))
	check(await wait_until(func(): return b_pid != 0 and got_a.has(Protocol.PLAYER_JOINED), 15), "bob joined; alice got PLAYER_JOINED")
	if got_a.has(Protocol.PLAYER_JOINED):
		var j = SustenetClient.decode_var(got_a[Protocol.PLAYER_JOINED][0])
		check(j is Dictionary and j.get("id") == b_pid and j.get("name") == "bob", "PLAYER_JOINED is bob (%s)" % [j])

	# Positions: alice moves, bob sees it (unreliable: send a few).
	var ok_pos := false
	for i in 40:
		a.send_unreliable(Protocol.POS, Protocol.encode_pos(Vector2(100 + i, 50)))
		if await wait_until(func(): return got_b.has(Protocol.POS), 0.1):
			ok_pos = true
			break
	check(ok_pos, "bob got alice's position")
	if ok_pos:
		var d: PackedByteArray = got_b[Protocol.POS][0]
		check(d.size() == 16 and d.decode_s64(0) == a_pid and d.decode_float(12) == 50.0 and not got_b[Protocol.POS][1],
				"POS relay: alice's id and position, unreliable")

	# Chat goes to everyone, named.
	a.send(Protocol.CHAT, "hello from alice".to_utf8_buffer())
	check(await wait_until(func(): return chat_b.has("alice: hello from alice"), 5), "bob got 'alice: hello from alice' (%s)" % [chat_b])

	# ECHO on both channels (what `sustenet probe` uses).
	b.send(Protocol.ECHO, PackedByteArray([9, 8, 7]))
	check(await wait_until(func(): return got_b.has(Protocol.ECHO), 5) and got_b[Protocol.ECHO][0] == PackedByteArray([9, 8, 7]) \
			and got_b[Protocol.ECHO][1], "reliable ECHO came back reliably")

	# /kick kicks alice with the demo's message; bob hears that she left.
	a.send(Protocol.CHAT, Protocol.KICK_CHAT.to_utf8_buffer())
	if check(await wait_until(func(): return not a_disc.is_empty(), 10), "alice was disconnected after /kick"):
		check(a_disc[0] == SustenetClient.REASON_KICKED and String(a_disc[1]).contains(Protocol.KICK_MESSAGE),
				"reason KICKED with the demo's message (%s)" % [a_disc])
	check(await wait_until(func(): return got_b.has(Protocol.PLAYER_LEFT), 5)
			and got_b[Protocol.PLAYER_LEFT][0].decode_s64(0) == a_pid, "bob got PLAYER_LEFT for alice")
	a.disconnect_from_server()
	b.disconnect_from_server()
	await finish()
