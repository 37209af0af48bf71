//! The HCL strata writes for a layer's backend: the override that keeps the state of a layer
//! without a backend in the state dir, and the `-backend-config` file of a layer with one.
//!
//! Both are built as `hcl` values and printed by `hcl::to_string`, which escapes strings: a
//! value holding `${`, `%{`, quotes or newlines stays a literal string and never becomes a
//! template or breaks out into HCL of its own. hcl-rs 0.20's marker escaping misses a marker that
//! directly follows another `$` or `%` pair (`"${a}$%{b}"` prints as `"$${a}$%{b}"`, whose `%{`
//! is live), so every string is also read back through hcl-rs's parser and refused unless it
//! comes back unchanged: such values are refused, never written as templates.

use hcl::{Attribute, Block, Body, Expression, Identifier};

use super::workdir::LayerPaths;

/// The override file strata adds to a layer without a backend, to keep its state in the state dir.
pub const BACKEND_OVERRIDE: &str = "zz_strata_backend_override.tf";

const OVERRIDE_HEADER: &str =
    "# Written by strata: this layer declares no backend, so its state lives in strata's state dir.\n";

fn print(body: &Body) -> String {
    hcl::to_string(body).expect("an HCL body built from literals prints")
}

/// Whether `text` prints as an HCL string that reads back as exactly `text`.
fn stays_literal(text: &str) -> bool {
    let printed = print(&Body::builder().add_attribute(("v", text)).build());
    hcl::parse(&printed).is_ok_and(|body| {
        body.attributes()
            .next()
            .is_some_and(|a| matches!(a.expr(), Expression::String(back) if back == text))
    })
}

/// Whether every string in `value`, keys included, stays a literal.
fn all_literal(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => stays_literal(s),
        serde_json::Value::Array(items) => items.iter().all(all_literal),
        serde_json::Value::Object(map) => {
            map.iter().all(|(k, v)| stays_literal(k) && all_literal(v))
        }
        _ => true,
    }
}

/// The backend override for a layer without a backend: local state in the state dir.
///
/// # Errors
/// A state path that cannot be written as an HCL literal (see the module's documentation).
pub fn override_file(paths: &LayerPaths) -> Result<String, String> {
    let state = paths.state_file.display().to_string();
    let workspaces = paths.workspace_dir.display().to_string();
    for path in [&state, &workspaces] {
        if !stays_literal(path) {
            return Err(format!(
                "the state path {path} cannot be written as an HCL literal: choose a state dir without `$`, `%` or `{{` next to each other"
            ));
        }
    }
    let local = Block::builder("backend")
        .add_label("local")
        .add_attribute(("path", state))
        .add_attribute(("workspace_dir", workspaces))
        .build();
    let body = Body::builder()
        .add_block(Block::builder("terraform").add_block(local).build())
        .build();
    let mut text = String::from(OVERRIDE_HEADER);
    text.push_str(&print(&body));
    Ok(text)
}

/// What strata gives a layer that declares no backend.
pub struct OwnBackend {
    /// The override file's text (see [`BACKEND_OVERRIDE`]).
    pub override_text: String,
    /// The `-backend-config` file's text, when the backend needs settings kept off the
    /// configuration: the state database's connection string.
    pub config_text: Option<String>,
}

/// The backend of a layer without one: local state in the state dir, or, with the state in
/// PostgreSQL, Terraform's `pg` backend in the same database, in a schema of the layer's own.
///
/// # Guarantees
/// The connection string is only in `config_text` (for a 0600 `-backend-config` file), never in
/// the override file, on a command line or in the environment.
///
/// # Errors
/// A state path that cannot be written as an HCL literal (see the module's documentation).
pub fn own_backend(paths: &LayerPaths) -> Result<OwnBackend, String> {
    let Some((store, rel)) = crate::store::route(&paths.dir) else {
        return Ok(OwnBackend {
            override_text: override_file(paths)?,
            config_text: None,
        });
    };
    let pg = Block::builder("backend")
        .add_label("pg")
        .add_attribute(("schema_name", schema_name(store.namespace(), &rel)))
        .build();
    let body = Body::builder()
        .add_block(Block::builder("terraform").add_block(pg).build())
        .build();
    let mut override_text = String::from(PG_HEADER);
    override_text.push_str(&print(&body));
    let conn = serde_json::Map::from_iter([(
        "conn_str".to_string(),
        serde_json::Value::String(store.url().expose().to_string()),
    )]);
    let config_text = config_file(&conn).map_err(|_| {
        format!(
            "the state URL {} cannot be written as an HCL literal",
            store.url()
        )
    })?;
    Ok(OwnBackend {
        override_text,
        config_text: Some(config_text),
    })
}

/// How long a layer on strata's `pg` backend waits for Terraform's state lock when it sets no
/// `lock_timeout`. The backend holds one lock for the whole database (advisory lock -1) while it
/// plans or applies a workspace that has no row yet, and tries that same lock (beside the
/// workspace's own) whenever it locks an existing workspace too, failing when another holds it.
/// So a new layer's first run, of any stack sharing the database, blocks every layer on the
/// backend, new or not: without a wait, a layer meeting another's first run would fail (and back
/// off, and alert) only because a neighbour was new.
pub const OWN_PG_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

const PG_HEADER: &str =
    "# Written by strata: this layer declares no backend, so its state lives in strata's state database.\n";

/// The PostgreSQL schema of a layer's Terraform state: `strata_<namespace>_<layer>`. A name
/// that is not already a plain lowercase identifier (an environment's `envs/prod/layers/net`, a
/// `-`, capitals) or is past PostgreSQL's 63 bytes has every other character made `_`, is cut,
/// and ends in a hash of the whole: two layers never share a schema, whatever their names.
pub fn schema_name(namespace: &str, layer_dir: &str) -> String {
    let layer = layer_dir.strip_prefix("layers/").unwrap_or(layer_dir);
    let whole = format!("strata_{namespace}_{layer}");
    let plain = whole
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain && whole.len() <= 63 {
        return whole;
    }
    let clean: String = whole
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    use sha2::Digest;
    let digest = sha2::Sha256::digest(whole.as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}_{tag}", &clean[..clean.len().min(54)])
}

/// The `-backend-config` file: one `name = value` line per setting, each value a literal.
///
/// # Errors
/// The first setting whose name is not an HCL identifier (letters, digits, `_` and `-`, not
/// starting with a digit), or whose value cannot be written as an HCL literal (see the module's
/// documentation). Messages name the setting, never its value, which may be a secret.
pub fn config_file(
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, String> {
    let mut body = Body::builder();
    for (name, value) in settings {
        let key = Identifier::new(name.as_str()).map_err(|_| {
            format!("backend_config setting \"{name}\" is not a valid name: use letters, digits, `_` and `-`")
        })?;
        if !all_literal(value) {
            return Err(format!(
                "backend_config setting \"{name}\" cannot be written as an HCL literal: its value has `$`, `%` or `{{` next to each other in a way strata cannot escape"
            ));
        }
        let value: Expression =
            hcl::to_expression(value).expect("a JSON value is an HCL expression");
        body = body.add_attribute(Attribute::new(key, value));
    }
    Ok(print(&body.build()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    /// Values that a naive `format!` would turn into templates, strings cut short or extra HCL.
    const TRICKY: [&str; 8] = [
        "${var.secret}",
        "%{ if true }yes%{ endif }",
        "say \"hi\"",
        "two\nlines\" = 1\ninjected = \"x",
        "back\\slash",
        "$${already}",
        "%%{already}",
        "tab\tand unicode é",
    ];

    /// Values hcl-rs 0.20 would print wrongly: the first as a live directive, the others as a
    /// different literal.
    const UNESCAPABLE: [&str; 3] = ["${a}$%{ if true }x%{ endif }", "${a}$${b}", "x $${a} %%{b}"];

    /// The generated text read back as data: every string attribute's value as HCL parses it.
    fn read_back(text: &str) -> serde_json::Value {
        hcl::from_str::<serde_json::Value>(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
    }

    #[test]
    fn schema_names_are_postgres_identifiers_and_stay_apart() {
        assert_eq!(schema_name("default", "layers/net"), "strata_default_net");
        let env = schema_name("shop", "envs/prod/layers/db-main");
        assert!(
            env.starts_with("strata_shop_envs_prod_layers_db_main_"),
            "{env}"
        );
        // Names that clean up alike stay apart.
        assert_ne!(
            schema_name("default", "envs/prod/layers/app"),
            schema_name("default", "layers/envs_prod_layers_app")
        );
        assert_ne!(
            schema_name("a-b", "layers/x"),
            schema_name("a_b", "layers/x")
        );
        let long = "x".repeat(80);
        let (a, b) = (
            schema_name(&long, "layers/a"),
            schema_name(&long, "layers/b"),
        );
        assert!(a.len() <= 63 && b.len() <= 63 && a != b, "{a} {b}");
    }

    #[test]
    fn backend_config_values_stay_literal() {
        let mut settings = serde_json::Map::new();
        for (i, v) in TRICKY.iter().enumerate() {
            settings.insert(format!("key_{i}"), json!(v));
        }
        settings.insert("port".into(), json!(5432));
        settings.insert("skip".into(), json!(true));
        settings.insert("list".into(), json!(["${a}", "b"]));
        settings.insert("map".into(), json!({"k": "%{x}"}));
        let text = config_file(&settings).unwrap();
        assert_eq!(
            read_back(&text),
            serde_json::Value::Object(settings),
            "{text}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("injected")),
            "a newline and a quote in a value start no attribute of their own: {text}"
        );
    }

    #[test]
    fn values_hcl_rs_cannot_escape_are_refused_without_quoting_them() {
        for tricky in UNESCAPABLE {
            let settings = serde_json::Map::from_iter([("password".to_string(), json!(tricky))]);
            let err = config_file(&settings).unwrap_err();
            assert!(err.contains("\"password\" cannot be written"), "{err}");
            assert!(!err.contains(tricky), "{err}");
            let nested = serde_json::Map::from_iter([("m".to_string(), json!({ tricky: [1] }))]);
            assert!(config_file(&nested).is_err(), "a key in a map");

            let state = Path::new("/state").join(tricky);
            let paths = LayerPaths::new(&state, &crate::stack::LayerId::terraform("net"));
            let err = override_file(&paths).unwrap_err();
            assert!(err.contains("cannot be written as an HCL literal"), "{err}");
        }
    }

    #[test]
    fn a_setting_name_that_is_not_an_identifier_is_refused() {
        for name in ["a b", "x = 1\ny", "", "1st"] {
            let settings = serde_json::Map::from_iter([(name.to_string(), json!("v"))]);
            let err = config_file(&settings).unwrap_err();
            assert!(err.contains("is not a valid name"), "{name:?}: {err}");
        }
    }

    #[test]
    fn the_override_keeps_paths_literal() {
        for tricky in TRICKY {
            let state = Path::new("/state").join(tricky);
            let paths = LayerPaths::new(&state, &crate::stack::LayerId::terraform("net"));
            let text = override_file(&paths).unwrap();
            assert!(text.starts_with("# Written by strata"), "{text}");
            let backend = &read_back(&text)["terraform"]["backend"]["local"];
            assert_eq!(
                backend["path"],
                paths.state_file.display().to_string(),
                "{text}"
            );
            assert_eq!(
                backend["workspace_dir"],
                paths.workspace_dir.display().to_string(),
                "{text}"
            );
        }
    }
}
