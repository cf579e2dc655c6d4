## One cluster as the master lists it to a web client: the same properties
## as SustenetClusterInfo (which needs the GDExtension). [member tcp_port] is
## the cluster's WebSocket port; [member udp_port] is 1 when it speaks
## [code]wss://[/code], 0 for [code]ws://[/code].
class_name SustenetWebClusterInfo
extends RefCounted

## The cluster's id; pass it to [method SustenetWebClient.join_cluster].
var id: int = 0
## The cluster's display name.
var cluster_name: String = ""
## Host name or address players connect to.
var address: String = ""
## The cluster's WebSocket port.
var tcp_port: int = 0
## 1 when the cluster's WebSocket speaks TLS ([code]wss://[/code]), else 0.
var udp_port: int = 0
## Players on the cluster now.
var players: int = 0
## Most players the cluster takes, as it registered with the master: its
## [code]max_connections[/code], or the default bound of 1,000 when that is 0. A
## Sustenet cluster always has a limit, so this is never 0 for one; 0 comes only
## from a cluster of another implementation that registered none, and the master
## never marks such a cluster full ([member locked]).
var capacity: int = 0
## True when the cluster is full: it cannot be joined.
var locked: bool = false
## Always -1: web clients cannot ping clusters (no UDP).
var ping_ms: float = -1.0


static func from_dict(d: Dictionary) -> SustenetWebClusterInfo:
	var c := SustenetWebClusterInfo.new()
	for k in d:
		c.set(k, d[k])
	return c


## The cluster's WebSocket URL.
func url() -> String:
	var host := address
	if host.contains(":") and not host.begins_with("["):
		host = "[%s]" % host
	return "%s://%s:%d" % ["wss" if udp_port == 1 else "ws", host, tcp_port]


func _to_string() -> String:
	return "%s (id %d, %s, %d/%d%s)" % [cluster_name, id, url(), players, capacity, ", full" if locked else ""]
