//! A failed command's error as text for stderr: `error: <message>` and each distinct cause, or
//! every stack-file problem on its own line.

use std::fmt::Write as _;

use crate::error::Error;

pub fn text(err: &Error) -> String {
    match err {
        Error::Invalid(diags) => invalid(diags),
        Error::Engine(e) => match &**e {
            crate::engine::EngineError::Invalid(diags) => invalid(diags),
            other => chain(other),
        },
        other => chain(other),
    }
}

/// `error: <message>`, then each cause whose text the previous one did not already include.
fn chain(err: &dyn std::error::Error) -> String {
    let mut t = format!("error: {err}\n");
    let mut shown = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !shown.contains(&text) {
            let _ = writeln!(t, "  caused by: {text}");
        }
        shown = text;
        source = s.source();
    }
    t
}

fn invalid(diags: &crate::stack::Diagnostics) -> String {
    let mut t = String::new();
    for d in diags.iter() {
        let _ = writeln!(t, "error: {d}");
    }
    let n = diags.len();
    let _ = writeln!(
        t,
        "validation failed: {n} error{}",
        if n == 1 { "" } else { "s" }
    );
    t
}
