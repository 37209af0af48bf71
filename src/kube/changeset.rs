//! The result of applying, planning or pruning a layer: what happened to each object, and why.

use serde::Serialize;

use super::conflicts::{Kept, Taken};
use super::object::ObjRef;
use super::sanitize::FieldDiff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Deleted,
    /// Deleted and created again (an immutable field changed; the object allowed it).
    Recreated,
    Skipped,
}

impl Action {
    /// `+`, `~`, ` `, `-`, `-/+`, `!`.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Created => "+",
            Action::Configured => "~",
            Action::Unchanged => " ",
            Action::Deleted => "-",
            Action::Recreated => "-/+",
            Action::Skipped => "!",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub object: ObjRef,
    pub action: Action,
    /// Why, for skips, recreations and deletions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For an update: the fields that change (live → desired), masked like kubediff's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDiff>,
    /// Fields another manager changed out of band and Git did not: left to it (drift).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Kept>,
    /// Fields another manager held and Git changed: taken (forced).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taken: Vec<Taken>,
}

/// Every object of a layer and what happened (or, for a plan, would happen) to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeSet {
    /// True for a plan: nothing was written.
    pub dry_run: bool,
    pub changes: Vec<Change>,
}

impl ChangeSet {
    pub fn push(&mut self, object: ObjRef, action: Action, reason: Option<String>) {
        self.push_fields(object, action, reason, Vec::new());
    }

    /// [`ChangeSet::push`] with the fields that change.
    pub fn push_fields(
        &mut self,
        object: ObjRef,
        action: Action,
        reason: Option<String>,
        fields: Vec<FieldDiff>,
    ) {
        self.changes.push(Change {
            object,
            action,
            reason,
            fields,
            kept: Vec::new(),
            taken: Vec::new(),
        });
    }

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// Anything other than unchanged.
    pub fn has_changes(&self) -> bool {
        self.changes
            .iter()
            .any(|c| !matches!(c.action, Action::Unchanged | Action::Skipped))
    }

    /// `+created ~configured -deleted`, as in `+3 ~1 -0`.
    pub fn summary(&self) -> String {
        let add = self.count(Action::Created) + self.count(Action::Recreated);
        let del = self.count(Action::Deleted) + self.count(Action::Recreated);
        format!("+{} ~{} -{}", add, self.count(Action::Configured), del)
    }

    pub fn action_of(&self, r: &ObjRef) -> Option<Action> {
        self.changes
            .iter()
            .find(|c| c.object.key() == r.key())
            .map(|c| c.action)
    }
}
