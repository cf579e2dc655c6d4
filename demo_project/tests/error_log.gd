## Keeps the errors the engine and scripts print while it is added (OS.add_logger), so that a
## test can check their messages. test_base.gd names it ErrorLog.
extends Logger

var lines := PackedStringArray()
var lock := Mutex.new()


func _log_error(_function: String, _file: String, _line: int, code: String, rationale: String,
		_editor_notify: bool, _error_type: int, _script_backtraces: Array[ScriptBacktrace]) -> void:
	lock.lock()
	lines.append((code + " " + rationale).strip_edges())
	lock.unlock()


## Whether a line kept contains [param text].
func has(text: String) -> bool:
	lock.lock()
	var found := false
	for l in lines:
		if l.contains(text):
			found = true
	lock.unlock()
	return found


## The lines kept, less those containing [param expected].
func unexpected(expected: String) -> PackedStringArray:
	lock.lock()
	var out := PackedStringArray()
	for l in lines:
		if not l.contains(expected):
			out.append(l)
	lock.unlock()
	return out
