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
