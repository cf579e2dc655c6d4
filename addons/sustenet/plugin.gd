@tool
extends EditorPlugin
## Sustenet editor plugin.
##
## The nodes themselves come from the GDExtension (sustenet.gdextension) and work without
## this plugin. Enabling it adds project settings that games can use as their defaults for
## the master (Project > Project Settings > Sustenet > Network):
##   sustenet/network/master_address     (String, default "127.0.0.1")
##   sustenet/network/master_port        (int 1..65535, default 6256)
##   sustenet/network/master_public_key  (String, base64; printed by `sustenet up`)
## Read them with ProjectSettings.get_setting("sustenet/network/master_port", 6256).
## Disabling the plugin removes the settings that still have their default value.

const SETTINGS := [
	{
		"name": "sustenet/network/master_address",
		"type": TYPE_STRING,
		"default": "127.0.0.1",
		"hint": PROPERTY_HINT_PLACEHOLDER_TEXT,
		"hint_string": "host name or IP address of the master",
	},
	{
		"name": "sustenet/network/master_port",
		"type": TYPE_INT,
		"default": 6256,
		"hint": PROPERTY_HINT_RANGE,
		"hint_string": "1,65535,1",
	},
	{
		"name": "sustenet/network/master_public_key",
		"type": TYPE_STRING,
		"default": "",
		"hint": PROPERTY_HINT_PLACEHOLDER_TEXT,
		"hint_string": "base64 public key (sustenet up / sustenet keygen --master)",
	},
]


func _enter_tree() -> void:
	# Property info is not saved in project.godot: register it whenever the plugin is active.
	_add_settings(false)


func _enable_plugin() -> void:
	_add_settings(true)


func _disable_plugin() -> void:
	var changed := false
	for s in SETTINGS:
		if ProjectSettings.has_setting(s.name) and ProjectSettings.get_setting(s.name) == s.default:
			ProjectSettings.clear(s.name)
			changed = true
	if changed:
		ProjectSettings.save()


func _add_settings(save: bool) -> void:
	var changed := false
	for s in SETTINGS:
		if not ProjectSettings.has_setting(s.name):
			ProjectSettings.set_setting(s.name, s.default)
			changed = true
		ProjectSettings.set_initial_value(s.name, s.default)
		ProjectSettings.add_property_info({
			"name": s.name,
			"type": s.type,
			"hint": s.hint,
			"hint_string": s.hint_string,
		})
		ProjectSettings.set_as_basic(s.name, true)
	if changed and save:
		ProjectSettings.save()
