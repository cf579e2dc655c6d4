//! The error a `#[func]` returns: `Result<T, Error>`, with `?`.
//!
//! GDScript sees the same thing as before: a Godot `Error` code (`OK` on
//! success, an `ERR_*` constant otherwise), and a refused call pushes its
//! message to the output as an error (`push_error`) when it returns. A
//! `#[func]` never panics.

use godot::global::Error as GdError;
use godot::meta::ToGodot;
use godot::meta::error::{CallOutcome, ErrorToGodot};
use godot::prelude::godot_error;

/// Why a call was refused: the code GDScript gets, and the message pushed
/// as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Error {
    code: GdError,
    message: String,
}

impl Error {
    /// A refusal with `code`.
    pub(crate) fn new(code: GdError, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A refusal with `code` and nothing pushed (the caller already knows
    /// why, or is told another way).
    pub(crate) fn quiet(code: GdError) -> Self {
        Self::new(code, "")
    }

    /// `ERR_INVALID_PARAMETER`: an argument or property is out of range.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(GdError::ERR_INVALID_PARAMETER, message)
    }

    /// Pushes the message as an error and gives the code, for a Godot
    /// virtual method that must return an `Error`.
    pub(crate) fn report(self) -> GdError {
        if !self.message.is_empty() {
            godot_error!("{}", self.message);
        }
        self.code
    }
}

/// `Ok` is `OK`; an `Err` pushes its message and is its code.
impl<T: ToGodot> ErrorToGodot<T> for Error {
    type Mapped = GdError;

    fn result_to_godot(result: Result<T, Self>) -> CallOutcome<GdError> {
        match result {
            Ok(_) => CallOutcome::Return(GdError::OK),
            Err(e) => CallOutcome::Return(e.report()),
        }
    }
}

/// The code of a result, its message pushed if it is an error (for a Godot
/// virtual method that must return an `Error`).
pub(crate) fn to_code(r: Result<(), Error>) -> GdError {
    match r {
        Ok(()) => GdError::OK,
        Err(e) => e.report(),
    }
}
