//! Who owns an object in the cluster: this stack, another stack, or nobody strata knows. A stack
//! name is not an identity (two teams can both call theirs `demo`), so every object strata
//! applies carries the stack's id, unique per source, and strata prunes or takes over only what
//! carries its own.

use std::fmt;

use serde_json::Value;

/// The label with the owning stack's id.
pub const LABEL_STACK_ID: &str = "strata.dev/stack-id";
/// `strata.dev/adopt: "true"` on a desired object lets strata take it over from another stack,
/// or from whoever created it by hand (kubectl, Helm).
pub const ANNOTATION_ADOPT: &str = "strata.dev/adopt";

/// A stack id derived from where the stack comes from and its name: the same source gives the
/// same id from any state dir (so a rebuilt state dir owns the same objects), two sources never
/// share one. 16 hex digits, a valid label value.
pub fn derive_id(source: &str, stack: &str) -> String {
    let digest = crate::hash::sha256(format!("strata-stack\0{source}\0{stack}").as_bytes());
    digest[..16].to_string()
}

/// Who owns a live object, as far as this stack can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// It carries this stack's id, or (applied before stack ids existed) this stack's name.
    Ours,
    /// It carries another stack's id.
    Stack { name: String, id: String },
    /// No strata labels: created by hand, by Helm, or by another tool.
    Unmanaged,
}

/// `managed by stack "demo" (id 0123456789abcdef)`, `created outside strata`.
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Ours => f.write_str("managed by this stack"),
            Owner::Stack { name, id } => write!(f, "managed by stack \"{name}\" (id {id})"),
            Owner::Unmanaged => f.write_str("created outside strata"),
        }
    }
}

/// The owner of `live` (a live object as JSON), seen from the stack `name` with id `id`.
///
/// An object labelled with this stack's name but no id was applied by a strata that predates
/// stack ids: it counts as this stack's, as it did then, and gets the id on its next apply.
pub fn owner_of(live: &Value, name: &str, id: &str) -> Owner {
    let labels = &live["metadata"]["labels"];
    let theirs = labels[super::apply::LABEL_STACK].as_str();
    match labels[LABEL_STACK_ID].as_str() {
        Some(i) if i == id => Owner::Ours,
        Some(i) => Owner::Stack {
            name: theirs.unwrap_or_default().to_string(),
            id: i.to_string(),
        },
        None if theirs == Some(name) => Owner::Ours,
        None => match theirs {
            Some(other) => Owner::Stack {
                name: other.to_string(),
                id: "none: applied by an older strata".into(),
            },
            None => Owner::Unmanaged,
        },
    }
}

/// Whether the desired object consents to being taken over.
pub fn adopt_annotated(desired: &Value) -> bool {
    desired["metadata"]["annotations"][ANNOTATION_ADOPT].as_str() == Some("true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_differ_by_source_and_name_and_are_label_values() {
        let a = derive_id("dir:/srv/a", "demo");
        assert_eq!(a, derive_id("dir:/srv/a", "demo"));
        assert_ne!(a, derive_id("dir:/srv/b", "demo"));
        assert_ne!(a, derive_id("dir:/srv/a", "prod"));
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_owner_is_read_from_the_id_label_then_the_stack_name() {
        let mine =
            json!({"metadata": {"labels": {"strata.dev/stack": "demo", LABEL_STACK_ID: "aa"}}});
        let theirs =
            json!({"metadata": {"labels": {"strata.dev/stack": "demo", LABEL_STACK_ID: "bb"}}});
        let legacy = json!({"metadata": {"labels": {"strata.dev/stack": "demo"}}});
        let by_hand = json!({"metadata": {"name": "a"}});
        assert_eq!(owner_of(&mine, "demo", "aa"), Owner::Ours);
        assert_eq!(
            owner_of(&theirs, "demo", "aa").to_string(),
            "managed by stack \"demo\" (id bb)"
        );
        assert_eq!(owner_of(&legacy, "demo", "aa"), Owner::Ours);
        assert!(matches!(
            owner_of(&legacy, "prod", "aa"),
            Owner::Stack { .. }
        ));
        assert_eq!(
            owner_of(&by_hand, "demo", "aa").to_string(),
            "created outside strata"
        );
    }
}
