//! A clean exit for the headless editor run that first finds the extension.
//!
//! When a project's `.godot/extension_list.cfg` does not list Sustenet yet (a fresh clone, a
//! new project with the addon just copied in), Godot loads the extension in the middle of the
//! editor's first file scan. That makes the editor regenerate its class documentation on a
//! worker thread, whose last step is a deferred call back onto the main thread. A headless
//! `--import` (or `--editor --quit`) ends right after the scan: the editor frees its
//! documentation while that call is still queued, and Godot (4.5 up to at least 4.6.3) then
//! runs it on the freed documentation while it tears the editor down: SIGSEGV, then SIGABRT,
//! exit code 134. The import has finished and been saved by then. Every GDExtension triggers
//! it; a run whose `extension_list.cfg` already names the extension (every later run) loads
//! the extension at start-up and is not affected.
//!
//! The extension cannot reach the editor's documentation, so it does what is left: when a
//! headless editor loaded it mid-scan, it ends the process with exit code 0 as the editor's
//! scene tree starts to close, after flushing the output, before the queued call can run.
//! By then the import results, `.godot/extension_list.cfg` and the editor's caches are on
//! disk; the editor's layout files of that one run are not written (the next run writes
//! them). docs/godot.md ("First import") says this for users.

use std::io::Write as _;

use godot::classes::{DisplayServer, Engine, SceneTree};
use godot::obj::Singleton as _;
use godot::prelude::*;

/// Called when the extension's scene level is initialized. At start-up the main loop does not
/// exist yet; it only exists when the editor loads the extension during a scan. In that case,
/// in a headless editor, arranges for [`exit_now`] to run when the scene tree starts to close.
pub fn note_load() {
    let engine = Engine::singleton();
    // Checked first: at start-up there is no main loop, and no display server either.
    let Some(main_loop) = engine.get_main_loop() else {
        return;
    };
    if !engine.is_editor_hint() || !headless(&engine) {
        return;
    }
    let Ok(tree) = main_loop.try_cast::<SceneTree>() else {
        return;
    };
    let Some(mut root) = tree.get_root() else {
        return;
    };
    root.connect(
        "tree_exiting",
        &Callable::from_fn("sustenet_first_import_exit", |_| exit_now()),
    );
}

/// Whether the display server is the headless one (`--headless`, `--import`, exports).
fn headless(engine: &Gd<Engine>) -> bool {
    engine
        .get_singleton("DisplayServer")
        .and_then(|object| object.try_cast::<DisplayServer>().ok())
        .is_some_and(|display| display.get_name() == "headless")
}

/// Flushes Rust's and C's output streams (Godot prints through C's) and ends the process with
/// exit code 0 without running exit handlers: Godot's static destructors must not run on an
/// engine that was not torn down.
#[allow(unsafe_code)]
fn exit_now() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: fflush(NULL) flushes every open C output stream and reads nothing else;
    // _exit ends the process at once and never returns.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(0)
    }
}
