//! What `strata state push` did, as text.

use std::fmt::Write as _;

use crate::terraform::StatePush;

pub fn text(r: &StatePush) -> String {
    if r.pushed.is_empty() {
        return format!("{}: no unsaved state to push.\n", r.layer);
    }
    let mut t = String::new();
    for p in &r.pushed {
        let _ = writeln!(
            t,
            "{}: pushed {} to the backend (kept as {}).",
            r.layer,
            p.file.display(),
            p.moved_to.display()
        );
    }
    let _ = writeln!(t, "{} can be planned and applied again.", r.layer);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::LayerId;
    use crate::terraform::PushedState;

    #[test]
    fn says_what_was_pushed_and_that_the_layer_is_free() {
        let mut r = StatePush {
            layer: LayerId::terraform("db"),
            pushed: Vec::new(),
        };
        assert_eq!(text(&r), "terraform.db: no unsaved state to push.\n");
        r.pushed.push(PushedState {
            file: "/s/layers/db/errored.tfstate".into(),
            moved_to: "/s/layers/db/errored.tfstate.pushed-20261121T230000Z".into(),
        });
        assert_eq!(
            text(&r),
            "terraform.db: pushed /s/layers/db/errored.tfstate to the backend (kept as /s/layers/db/errored.tfstate.pushed-20261121T230000Z).\nterraform.db can be planned and applied again.\n"
        );
    }
}
