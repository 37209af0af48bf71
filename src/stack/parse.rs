//! Reads `strata.hcl` into a [`Stack`], collecting every problem with its place.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hcl::edit::structure::{Attribute, Block, Body, Structure};
use hcl::edit::Span;

use super::diag::{hint, Diagnostics, Location, SourceMap};
use super::expr::Expr;
use super::model::*;

const BLOCK_TYPES: [&str; 7] = [
    "stack",
    "terraform",
    "cluster",
    "kubernetes",
    "environment",
    "image",
    "writeback",
];
const ENVIRONMENT_ATTRS: [&str; 2] = ["vars", "apply"];
const STACK_ATTRS: [&str; 7] = [
    "parallelism",
    "kubernetes_parallelism",
    "poll_interval",
    "drift_interval",
    "alert_after",
    "terraform_bin",
    "id",
];
const LAYER_ATTRS: [&str; 6] = ["source", "vars", "depends_on", "drift", "apply", "timeout"];
const TERRAFORM_ATTRS: [&str; 3] = ["workspace", "backend_config", "lock_timeout"];
const KUBERNETES_ATTRS: [&str; 4] = ["cluster", "namespace", "prune", "wait"];
const CLUSTER_ATTRS: [&str; 4] = ["kubeconfig", "kubeconfig_path", "context", "in_cluster"];

/// Parses the text of a stack file. Returns `None` only when the text is not HCL at all; otherwise
/// a stack built from whatever was valid, and the problems found.
pub(crate) fn parse_text(
    text: &str,
    file: &Path,
    revision: Option<&str>,
    root: &Path,
) -> (Option<Stack>, Diagnostics, SourceMap) {
    let map = SourceMap::new(file, text).at_revision(revision.map(str::to_string));
    let mut diags = Diagnostics::default();
    let body: Body = match hcl::edit::parser::parse_body(text) {
        Ok(b) => b,
        Err(e) => {
            let loc = e.location();
            let location = Location {
                file: file.to_path_buf(),
                line: loc.line(),
                col: loc.column(),
                revision: revision.map(str::to_string),
            };
            diags.push(location, format!("syntax error: {}", e.message()));
            return (None, diags, map);
        }
    };
    let mut p = Parser {
        map: &map,
        diags: &mut diags,
    };
    let stack = p.body(&body, root);
    (Some(stack), diags, map)
}

pub(super) struct Parser<'a> {
    pub(super) map: &'a SourceMap,
    pub(super) diags: &'a mut Diagnostics,
}

/// The attributes of one block, by name, after unknown and repeated ones were reported.
pub(super) struct Fields<'b> {
    attrs: BTreeMap<&'b str, &'b Attribute>,
}

impl<'b> Fields<'b> {
    pub(super) fn get(&self, name: &str) -> Option<&'b Attribute> {
        self.attrs.get(name).copied()
    }
}

impl Parser<'_> {
    pub(super) fn at(&self, span: Option<std::ops::Range<usize>>) -> Location {
        self.map.locate_span(span)
    }

    pub(super) fn err(&mut self, span: Option<std::ops::Range<usize>>, message: impl Into<String>) {
        let at = self.at(span);
        self.diags.push(at, message);
    }

    fn body(&mut self, body: &Body, root: &Path) -> Stack {
        let mut stack = Stack {
            name: String::new(),
            root: root.to_path_buf(),
            file: self.map.file().to_path_buf(),
            settings: StackSettings::default(),
            layers: Vec::new(),
            clusters: Vec::new(),
            environments: Vec::new(),
            env: None,
            positions: Default::default(),
            images: Vec::new(),
            writeback: None,
        };
        let mut stack_block: Option<Location> = None;
        let mut seen: BTreeMap<String, Location> = BTreeMap::new();
        for structure in body.iter() {
            let block = match structure {
                Structure::Attribute(a) => {
                    self.err(
                        a.key.span(),
                        format!(
                            "unexpected attribute \"{}\" at the top level: strata.hcl holds stack, terraform, cluster and kubernetes blocks",
                            a.key.as_str()
                        ),
                    );
                    continue;
                }
                Structure::Block(b) => b,
            };
            let kind = block.ident.as_str();
            if !BLOCK_TYPES.contains(&kind) {
                self.err(
                    block.ident.span(),
                    format!(
                        "unknown block type \"{kind}\"{}: expected one of stack, terraform, cluster, kubernetes, environment, image, writeback",
                        hint(kind, BLOCK_TYPES)
                    ),
                );
                continue;
            }
            if kind == "writeback" {
                let here = self.at(block.ident.span());
                match &stack.writeback {
                    Some(first) => {
                        let first = first.location.clone().expect("parsed blocks have a place");
                        self.diags.push(
                            here,
                            format!("a second writeback block (the first is at {first}): a stack has one"),
                        );
                    }
                    None => stack.writeback = Some(self.writeback(block, here)),
                }
                continue;
            }
            let Some(name) = self.label(block) else {
                continue;
            };
            let here = self.at(block.ident.span());
            if kind == "stack" {
                if let Some(first) = &stack_block {
                    self.diags.push(
                        here,
                        format!("a second stack block (the first is at {first}): a stack file declares one stack"),
                    );
                    continue;
                }
                stack_block = Some(here);
                stack.name = name;
                stack.settings = self.stack_settings(block);
                continue;
            }
            let key = format!("{kind}.{name}");
            if let Some(first) = seen.get(&key) {
                let first = first.clone();
                self.diags.push(
                    here,
                    format!("duplicate {kind} \"{name}\": first declared at {first}"),
                );
                continue;
            }
            seen.insert(key, here.clone());
            match kind {
                "cluster" => {
                    let c = self.cluster(block, name, here);
                    stack.clusters.push(c);
                }
                "environment" => {
                    let e = self.environment(block, name, here);
                    stack.environments.push(e);
                }
                "image" => stack.images.extend(self.image(block, name, here)),
                _ => {
                    let kind = LayerKind::parse(kind).expect("checked against BLOCK_TYPES");
                    if let Some(l) = self.layer(block, kind, name, here) {
                        stack.layers.push(l);
                    }
                }
            }
        }
        if stack_block.is_none() {
            self.diags.push(
                self.map.locate(0),
                "missing stack block: add `stack \"NAME\" { }` to name the stack",
            );
        }
        stack.index_layers();
        stack
    }

    /// The single label of a block, checked to be a usable name.
    fn label(&mut self, block: &Block) -> Option<String> {
        let kind = block.ident.as_str();
        match block.labels.as_slice() {
            [label] => {
                let name = label.as_str();
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    self.err(
                        label.span(),
                        format!("invalid {kind} name \"{name}\": use letters, digits, '_' and '-', starting with a letter"),
                    );
                    return None;
                }
                Some(name.to_string())
            }
            [] => {
                self.err(
                    block.ident.span(),
                    format!("{kind} block needs a name: `{kind} \"NAME\" {{ ... }}`"),
                );
                None
            }
            [_, extra, ..] => {
                self.err(
                    extra.span(),
                    format!("{kind} block takes one name, found {}", block.labels.len()),
                );
                None
            }
        }
    }

    /// Collects a block's attributes, reporting nested blocks (but those named in `blocks`, read
    /// elsewhere), unknown and repeated attributes.
    pub(super) fn fields<'b>(
        &mut self,
        block: &'b Block,
        allowed: &[&str],
        blocks: &[&str],
    ) -> Fields<'b> {
        let what = describe(block);
        let mut attrs: BTreeMap<&'b str, &'b Attribute> = BTreeMap::new();
        for s in block.body.iter() {
            match s {
                Structure::Block(b) if blocks.contains(&b.ident.as_str()) => {}
                Structure::Block(b) => self.err(
                    b.ident.span(),
                    format!(
                        "unexpected block \"{}\" in {what}: only attributes are allowed here",
                        b.ident.as_str()
                    ),
                ),
                Structure::Attribute(a) => {
                    let key = a.key.as_str();
                    if !allowed.contains(&key) {
                        self.err(
                            a.key.span(),
                            format!(
                                "unknown attribute \"{key}\" in {what}{}",
                                hint(key, allowed.iter().copied())
                            ),
                        );
                    } else if let Some(first) = attrs.get(key) {
                        let first = self.at(first.key.span());
                        self.err(
                            a.key.span(),
                            format!("attribute \"{key}\" set twice in {what} (first at {first})"),
                        );
                    } else {
                        attrs.insert(key, a);
                    }
                }
            }
        }
        Fields { attrs }
    }

    fn stack_settings(&mut self, block: &Block) -> StackSettings {
        let f = self.fields(block, &STACK_ATTRS, &["limits"]);
        let mut s = StackSettings::default();
        s.limits = self.limits_block(block).over(&s.limits);
        for (name, slot) in [
            ("parallelism", &mut s.parallelism),
            ("kubernetes_parallelism", &mut s.kubernetes_parallelism),
        ] {
            if let Some(a) = f.get(name) {
                if let Some(n) = self.number(a) {
                    if n == 0 {
                        self.err(a.value.span(), format!("{name} must be at least 1"));
                    } else {
                        *slot = n as usize;
                    }
                }
            }
        }
        for (name, slot) in [
            ("poll_interval", &mut s.poll_interval),
            ("drift_interval", &mut s.drift_interval),
            ("alert_after", &mut s.alert_after),
        ] {
            if let Some(d) = f.get(name).and_then(|a| self.duration(a)) {
                *slot = d;
            }
        }
        s.terraform_bin = f.get("terraform_bin").and_then(|a| self.string(a));
        if let Some(a) = f.get("id") {
            if let Some(id) = self.string(a) {
                // It is a label value on every object the stack applies.
                let ok = (1..=63).contains(&id.len())
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    && id.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && id.ends_with(|c: char| c.is_ascii_alphanumeric());
                if ok {
                    s.id = Some(id);
                } else {
                    self.err(
                        a.value.span(),
                        "id must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
                    );
                }
            }
        }
        s
    }

    fn layer(
        &mut self,
        block: &Block,
        kind: LayerKind,
        name: String,
        location: Location,
    ) -> Option<Layer> {
        let own: &[&str] = match kind {
            LayerKind::Terraform => &TERRAFORM_ATTRS,
            LayerKind::Kubernetes => &KUBERNETES_ATTRS,
        };
        let allowed: Vec<&str> = LAYER_ATTRS.iter().chain(own).copied().collect();
        let nested: &[&str] = match kind {
            LayerKind::Terraform => &[],
            LayerKind::Kubernetes => &["limits"],
        };
        let f = self.fields(block, &allowed, nested);
        let what = describe(block);

        let source = match f.get("source") {
            Some(a) => self.string(a),
            None => {
                self.diags.push(
                    location.clone(),
                    format!("{what} is missing the required attribute \"source\""),
                );
                None
            }
        };
        let vars = f.get("vars").map(|a| self.map_expr(a)).unwrap_or_default();
        let depends_on = f
            .get("depends_on")
            .map(|a| self.depends_on(a))
            .unwrap_or_default();
        let drift = match f
            .get("drift")
            .and_then(|a| self.choice(a, &["report", "correct"]))
        {
            Some("correct") => DriftPolicy::Correct,
            _ => DriftPolicy::Report,
        };
        let apply = match f
            .get("apply")
            .and_then(|a| self.choice(a, &["auto", "manual", "safe"]))
        {
            Some("manual") => ApplyPolicy::Manual,
            Some("safe") => ApplyPolicy::Safe,
            _ => ApplyPolicy::Auto,
        };
        let timeout = f
            .get("timeout")
            .and_then(|a| self.duration(a))
            .unwrap_or(Duration::from_secs(30 * 60));

        let spec = match kind {
            LayerKind::Terraform => LayerSpec::Terraform(TerraformSpec {
                workspace: f
                    .get("workspace")
                    .and_then(|a| self.string(a))
                    .unwrap_or_else(|| "default".into()),
                backend_config: f
                    .get("backend_config")
                    .map(|a| self.map_expr(a))
                    .unwrap_or_default(),
                lock_timeout: f.get("lock_timeout").and_then(|a| self.duration(a)),
            }),
            LayerKind::Kubernetes => {
                let cluster = match f.get("cluster") {
                    Some(a) => self.cluster_ref(a),
                    None => {
                        self.diags.push(
                            location.clone(),
                            format!("{what} is missing the required attribute \"cluster\" (e.g. `cluster = cluster.main`)"),
                        );
                        None
                    }
                };
                let namespace = f.get("namespace").and_then(|a| self.string(a));
                let prune = f.get("prune").and_then(|a| self.boolean(a)).unwrap_or(true);
                let wait = f.get("wait").and_then(|a| self.boolean(a)).unwrap_or(true);
                let limits = self.limits_block(block);
                let (cluster, cluster_location) = cluster?;
                LayerSpec::Kubernetes(KubernetesSpec {
                    cluster,
                    cluster_location,
                    namespace,
                    prune,
                    wait,
                    limits,
                })
            }
        };
        Some(Layer {
            id: LayerId::new(kind, name),
            location,
            source: source?.into(),
            vars,
            depends_on,
            drift,
            apply,
            timeout,
            spec,
        })
    }

    fn cluster(&mut self, block: &Block, name: String, location: Location) -> Cluster {
        let f = self.fields(block, &CLUSTER_ATTRS, &[]);
        let expr =
            |p: &mut Self, n: &str| f.get(n).map(|a| Expr::from_edit(&a.value, p.map, p.diags));
        let in_cluster = f
            .get("in_cluster")
            .and_then(|a| self.boolean(a))
            .unwrap_or(false);
        let c = Cluster {
            kubeconfig: expr(self, "kubeconfig"),
            kubeconfig_path: expr(self, "kubeconfig_path"),
            context: expr(self, "context"),
            in_cluster,
            name,
            location: location.clone(),
        };
        if c.in_cluster {
            if c.kubeconfig.is_some() || c.kubeconfig_path.is_some() || c.context.is_some() {
                self.diags.push(
                    location,
                    format!(
                        "cluster \"{}\" sets in_cluster = true and a kubeconfig or context: \
                         in_cluster uses the pod's service account, choose one",
                        c.name
                    ),
                );
            }
            return c;
        }
        match (&c.kubeconfig, &c.kubeconfig_path) {
            (Some(_), Some(p)) => self.diags.push(
                p.location.clone(),
                format!(
                    "cluster \"{}\" sets both kubeconfig and kubeconfig_path: choose one",
                    c.name
                ),
            ),
            (None, None) => self.diags.push(
                location,
                format!(
                    "cluster \"{}\" needs kubeconfig (content), kubeconfig_path (a file) or \
                     in_cluster = true (the cluster strata runs in)",
                    c.name
                ),
            ),
            _ => {}
        }
        c
    }
}

impl Parser<'_> {
    /// An `environment` block: its `vars` must be literal (they are what expressions read as
    /// `env.vars.X`), its `apply` one of the policies.
    fn environment(&mut self, block: &Block, name: String, location: Location) -> Environment {
        let f = self.fields(block, &ENVIRONMENT_ATTRS, &[]);
        let mut vars = hcl::Map::new();
        if let Some(a) = f.get("vars") {
            let expr = Expr::from_edit(&a.value, self.map, self.diags);
            if !expr.is_literal() || !expr.env_refs.is_empty() {
                self.err(
                    a.value.span(),
                    format!("environment \"{name}\": vars must be literal values, not references"),
                );
            } else {
                match hcl::eval::Evaluate::evaluate(&expr.expr, &hcl::eval::Context::new()) {
                    Ok(hcl::Value::Object(map)) => vars = map,
                    Ok(_) => self.err(
                        a.value.span(),
                        format!(
                            "environment \"{name}\": vars must be an object, {{ NAME = VALUE }}"
                        ),
                    ),
                    Err(e) => {
                        self.err(a.value.span(), format!("environment \"{name}\": vars: {e}"))
                    }
                }
            }
        }
        let apply = match f
            .get("apply")
            .and_then(|a| self.choice(a, &["auto", "manual", "safe"]))
        {
            Some("manual") => ApplyPolicy::Manual,
            Some("safe") => ApplyPolicy::Safe,
            _ => ApplyPolicy::Auto,
        };
        Environment {
            name,
            location,
            vars,
            apply,
        }
    }
}

/// `terraform "network"`, for messages.
fn describe(block: &Block) -> String {
    match block.labels.first() {
        Some(l) => format!("{} \"{}\"", block.ident.as_str(), l.as_str()),
        None => block.ident.as_str().to_string(),
    }
}
