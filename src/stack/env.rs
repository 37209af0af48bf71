//! Environments: one stack, many instances (`environment "dev" { vars = {...} }`). Expressions
//! read `env.name` and `env.vars.X`; a stack specialised for one environment
//! ([`Stack::for_env`]) evaluates them with that environment's values, and its layers take the
//! stricter of their own `apply` and the environment's.

use std::sync::Arc;

use super::diag::{self, Diagnostics};
use super::expr::Expr;
use super::model::{LayerSpec, Stack};

/// Why a stack could not be specialised for an environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("the stack declares no environment \"{name}\"{hint}; it declares: {known}")]
    Unknown {
        name: String,
        hint: String,
        known: String,
    },
    #[error("the stack declares no environments: drop --env {0}")]
    NoEnvironments(String),
    #[error("the stack declares several environments ({}): name one with --env NAME", .0.join(", "))]
    Ambiguous(Vec<String>),
}

impl Stack {
    /// The names of its environments, in declaration order.
    pub fn environment_names(&self) -> Vec<String> {
        self.environments.iter().map(|e| e.name.clone()).collect()
    }

    /// Every expression of the stack file that is evaluated per layer or cluster.
    fn exprs_mut(&mut self) -> impl Iterator<Item = &mut Expr> {
        let layers = self.layers.iter_mut().flat_map(|l| {
            let backend = match &mut l.spec {
                LayerSpec::Terraform(t) => Some(t.backend_config.values_mut()),
                LayerSpec::Kubernetes(_) => None,
            };
            l.vars.values_mut().chain(backend.into_iter().flatten())
        });
        let clusters = self.clusters.iter_mut().flat_map(|c| {
            [&mut c.kubeconfig, &mut c.kubeconfig_path, &mut c.context]
                .into_iter()
                .flatten()
        });
        layers.chain(clusters)
    }

    fn exprs(&self) -> Vec<&Expr> {
        let mut out: Vec<&Expr> = Vec::new();
        for l in &self.layers {
            out.extend(l.vars.values());
            if let LayerSpec::Terraform(t) = &l.spec {
                out.extend(t.backend_config.values());
            }
        }
        for c in &self.clusters {
            out.extend(
                [&c.kubeconfig, &c.kubeconfig_path, &c.context]
                    .into_iter()
                    .flatten(),
            );
        }
        out
    }

    /// The stack as environment `name` runs it: `env` bound in every expression, each layer's
    /// `apply` the stricter of its own and the environment's. `None` for a stack without
    /// environments (it runs as it is).
    ///
    /// # Errors
    /// An unknown environment (naming the known ones), `--env` on a stack without
    /// environments, or no `--env` on a stack with several.
    pub fn for_env(&self, name: Option<&str>) -> Result<Stack, EnvError> {
        let names = self.environment_names();
        let env = match (name, self.environments.as_slice()) {
            (None, []) => return Ok(self.clone()),
            (Some(n), []) => return Err(EnvError::NoEnvironments(n.to_string())),
            (None, [only]) => only,
            (None, _) => return Err(EnvError::Ambiguous(names)),
            (Some(n), envs) => {
                envs.iter()
                    .find(|e| e.name == n)
                    .ok_or_else(|| EnvError::Unknown {
                        name: n.to_string(),
                        hint: diag::hint(n, names.iter().map(String::as_str)),
                        known: names.join(", "),
                    })?
            }
        };
        let mut value = hcl::Map::new();
        value.insert("name".to_string(), hcl::Value::String(env.name.clone()));
        value.insert("vars".to_string(), hcl::Value::Object(env.vars.clone()));
        let bound = Arc::new(hcl::Value::Object(value));
        let mut stack = self.clone();
        for e in stack.exprs_mut() {
            e.env = Some(bound.clone());
        }
        for l in &mut stack.layers {
            l.apply = l.apply.stricter(env.apply);
        }
        stack.env = Some(env.name.clone());
        Ok(stack)
    }
}

/// Every `env.vars.X` must be declared by every environment, and `env` needs one.
pub(super) fn check(stack: &Stack, diags: &mut Diagnostics) {
    for e in stack.exprs() {
        for r in &e.env_refs {
            if stack.environments.is_empty() {
                diags.push(
                    r.location.clone(),
                    "reads env, but the stack declares no environment block",
                );
                continue;
            }
            let Some(var) = &r.var else { continue };
            for env in &stack.environments {
                if !env.vars.contains_key(var) {
                    let known: Vec<&str> = env.vars.keys().map(String::as_str).collect();
                    diags.push(
                        r.location.clone(),
                        format!(
                            "env.vars.{var}: environment \"{}\" (at {}) has no var \"{var}\"{}",
                            env.name,
                            env.location,
                            diag::hint(var, known)
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{ApplyPolicy, LayerId};
    use crate::value::{InputValue, Outputs};

    fn stack(text: &str) -> (Stack, Diagnostics) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("x")).unwrap();
        Stack::from_text(text, &dir.path().join("strata.hcl"), dir.path()).unwrap()
    }

    const TWO: &str = r#"stack "shop" {}
environment "dev" {
  vars = { replicas = 1, image = "web:1.4.0" }
}
environment "prod" {
  vars  = { replicas = 3, image = "web:1.2.0" }
  apply = "safe"
}
terraform "cluster" {
  source = "x"
  vars   = { name = "shop-${env.name}", size = env.vars.replicas }
}
"#;

    #[test]
    fn each_environment_gives_its_own_values_and_policy() {
        let (s, diags) = stack(TWO);
        assert!(diags.is_empty(), "{diags}");
        let id = LayerId::terraform("cluster");
        let eval = |env: &str, var: &str| {
            let s = s.for_env(Some(env)).unwrap();
            match s.layer(&id).unwrap().vars[var]
                .evaluate(&Outputs::new())
                .unwrap()
            {
                InputValue::Known(v) => v,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(eval("dev", "name"), "shop-dev");
        assert_eq!(eval("prod", "size"), 3);
        let prod = s.for_env(Some("prod")).unwrap();
        assert_eq!(prod.layer(&id).unwrap().apply, ApplyPolicy::Safe);
        assert_eq!(prod.env.as_deref(), Some("prod"));
    }

    #[test]
    fn an_environment_must_be_named_and_known() {
        let (s, _) = stack(TWO);
        assert_eq!(
            s.for_env(None).unwrap_err().to_string(),
            "the stack declares several environments (dev, prod): name one with --env NAME"
        );
        let e = s.for_env(Some("prd")).unwrap_err().to_string();
        assert!(
            e.contains("no environment \"prd\"") && e.contains("dev, prod"),
            "{e}"
        );
        let (plain, _) = stack("stack \"s\" {}\n");
        assert!(s.for_env(None).is_err());
        assert!(plain.for_env(None).is_ok());
        assert!(plain.for_env(Some("dev")).is_err());
    }

    #[test]
    fn a_var_one_environment_lacks_is_named_with_the_environment() {
        let (_, diags) = stack(&TWO.replace("vars  = { replicas = 3, ", "vars  = { "));
        let text = diags.to_string();
        assert!(
            text.contains("env.vars.replicas: environment \"prod\"")
                && text.contains("has no var \"replicas\""),
            "{text}"
        );
        let (_, diags) = stack(
            "stack \"s\" {}\nterraform \"t\" {\n  source = \"x\"\n  vars = { n = env.name }\n}\n",
        );
        assert!(
            diags.to_string().contains("declares no environment block"),
            "{diags}"
        );
    }
}
