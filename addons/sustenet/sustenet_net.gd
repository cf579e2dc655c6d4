## Picks the right Sustenet client for the platform: [SustenetWebClient]
## (pure GDScript over WebSocket) in a web export, or wherever the
## GDExtension is not loaded; [code]SustenetClient[/code] (the GDExtension:
## TCP + UDP, Noise) everywhere else. Both have the same methods and signals
## where they make sense, so one game script drives either.
## [codeblock]
## var net := SustenetNet.create_client({
##     "master_address": "play.example.com", "master_port": 6256,
##     "master_public_key": "BASE64 KEY",            # native builds
##     "websocket_url": "wss://play.example.com:7256", # web builds
## })
## add_child(net)
## net.login_succeeded.connect(func(_id): net.join_least_loaded_cluster())
## net.login("ann", "")
## [/codeblock]
class_name SustenetNet
extends RefCounted


## Whether [method create_client] makes a [SustenetWebClient] here: on the
## web platform, or when the GDExtension's [code]SustenetClient[/code] class
## is not available.
static func uses_web_client() -> bool:
	return OS.has_feature("web") or not ClassDB.class_exists("SustenetClient")


## A new client node (not yet in the tree) configured from [param settings]:
## [code]master_address[/code], [code]master_port[/code],
## [code]master_public_key[/code] for the native client;
## [code]websocket_url[/code], [code]trusted_certificate[/code],
## [code]tls_host_name[/code] for the web client; [code]username[/code],
## [code]auto_join[/code] for both. Keys that do not apply are ignored.
static func create_client(settings: Dictionary = {}) -> Node:
	var keys: Array
	var client: Node
	if uses_web_client():
		client = SustenetWebClient.new()
		keys = ["trusted_certificate", "tls_host_name"]
		if settings.has("websocket_url"):
			client.set("master_url", settings["websocket_url"])
	else:
		client = ClassDB.instantiate("SustenetClient")
		keys = ["master_address", "master_port", "master_public_key"]
	for k in keys + ["username", "auto_join"]:
		if settings.has(k):
			client.set(k, settings[k])
	return client


## The client multiplayer peer for [param client] (a node [method create_client] made),
## with its [code]create_client[/code] already called: a [SustenetWebMultiplayerPeer] for a
## [SustenetWebClient] (web exports), a [code]SustenetMultiplayerPeer[/code] (the GDExtension)
## for a [code]SustenetClient[/code]. Assign it to [member MultiplayerAPI.multiplayer_peer];
## it is [constant MultiplayerPeer.CONNECTION_CONNECTING] until the cluster welcomes it.
## Returns null (after pushing an error) when [param client] is neither or
## [code]create_client[/code] fails.
## [codeblock]
## var net := SustenetNet.create_client(settings)
## add_child(net)
## multiplayer.multiplayer_peer = SustenetNet.create_multiplayer_peer(net)
## net.login("ann", "")
## [/codeblock]
static func create_multiplayer_peer(client: Node) -> MultiplayerPeer:
	var peer: MultiplayerPeer = null
	if client is SustenetWebClient:
		peer = SustenetWebMultiplayerPeer.new()
	elif client != null and client.is_class("SustenetClient"):
		peer = ClassDB.instantiate("SustenetMultiplayerPeer")
	else:
		push_error("SustenetNet.create_multiplayer_peer: %s is neither a SustenetClient nor a SustenetWebClient" % client)
		return null
	var err: Error = peer.call("create_client", client)
	if err != OK:
		push_error("SustenetNet.create_multiplayer_peer: create_client failed: %s" % error_string(err))
		return null
	return peer
