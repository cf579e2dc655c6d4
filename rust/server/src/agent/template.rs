//! A template's arguments with their `{placeholders}` filled in.
//!
//! Placeholders are `{name}` with a name of `[A-Za-z0-9_]`; `{{` and `}}`
//! are a literal brace. The agent's own placeholders (`port`, `key_path`,
//! `key_name`, `master`, `instance_id`, `public_address`) win over a spawn
//! request's parameters of the same name. Each argument stays one argument
//! (no shell ever sees it), so a value cannot add arguments.

use std::collections::HashMap;

/// The placeholders the agent fills in itself.
pub const AGENT_PLACEHOLDERS: [&str; 6] = [
    "port",
    "key_path",
    "key_name",
    "master",
    "instance_id",
    "public_address",
];

/// One argument split into literal text and placeholder names.
fn parts(arg: &str) -> Result<Vec<(bool, String)>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                        _ => {
                            return Err(format!(
                                "'{arg}': a placeholder is {{name}} with a name of A-Z, a-z, 0-9 and _ (write {{{{ for a brace)"
                            ));
                        }
                    }
                }
                if name.is_empty() {
                    return Err(format!("'{arg}': empty placeholder {{}}"));
                }
                out.push((false, std::mem::take(&mut text)));
                out.push((true, name));
            }
            '}' => return Err(format!("'{arg}': a lone }} (write }}}} for a brace)")),
            c => text.push(c),
        }
    }
    out.push((false, text));
    Ok(out)
}

/// Checks a template's arguments parse (config validation).
pub fn check_args(args: &[String]) -> Result<(), String> {
    for a in args {
        parts(a)?;
    }
    Ok(())
}

/// The arguments with every placeholder replaced; a placeholder without a
/// value is an error naming it.
pub fn fill(args: &[String], values: &HashMap<String, String>) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        let mut filled = String::new();
        for (is_name, s) in parts(a)? {
            if is_name {
                let v = values.get(&s).ok_or_else(|| {
                    format!("the template uses {{{s}}}, which the spawn request did not give")
                })?;
                filled.push_str(v);
            } else {
                filled.push_str(&s);
            }
        }
        out.push(filled);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> HashMap<String, String> {
        HashMap::from([
            ("scene".to_owned(), "crypt".to_owned()),
            ("port".to_owned(), "7001".to_owned()),
        ])
    }

    #[test]
    fn placeholders_are_filled_and_braces_escape() {
        let args = vec![
            "--headless".to_owned(),
            "--scene=res://dungeons/{scene}.tscn".to_owned(),
            "--port={port}".to_owned(),
            "{{literal}}".to_owned(),
        ];
        assert_eq!(
            fill(&args, &values()).unwrap(),
            [
                "--headless",
                "--scene=res://dungeons/crypt.tscn",
                "--port=7001",
                "{literal}"
            ]
        );
    }

    #[test]
    fn a_missing_value_or_a_bad_placeholder_is_named() {
        let err = fill(&["{party}".to_owned()], &values()).unwrap_err();
        assert!(err.contains("{party}"), "{err}");
        for bad in ["{", "{a b}", "}", "{}", "x{y"] {
            assert!(check_args(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_value_stays_inside_its_argument() {
        let v = HashMap::from([("scene".to_owned(), "a --evil b".to_owned())]);
        assert_eq!(fill(&["{scene}".to_owned()], &v).unwrap(), ["a --evil b"]);
    }
}
