//! One HTTP side for every stack and environment the agent converges: the listener, the
//! metrics, the webhook secret and the API token are the agent's; status, readiness, approvals
//! and the dashboard's JSON are each environment's, chosen with `?stack=NAME` (an agent of
//! several stacks) and `?env=NAME` (a stack of several environments).

use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{AgentHttp, Metrics, Trigger};
use crate::redact::Redacted;

/// What the HTTP handlers share: the agent's side and every environment's.
pub struct Hub {
    pub metrics: Arc<Metrics>,
    pub webhook_secret: Option<Redacted<Vec<u8>>>,
    /// The bearer token mutating endpoints require (`--api-token-file`); none: they refuse all.
    pub api_token: Option<Redacted<Vec<u8>>>,
    /// Each environment's side, by name; one unnamed for a stack without environments. Grows
    /// when a revision declares a new environment, shrinks when one is removed.
    envs: RwLock<Vec<Arc<AgentHttp>>>,
    /// Whether `/api/v1/status` answers by environment: an agent converging every environment,
    /// or several named with `--env`. One `--env NAME` keeps the shape of one environment.
    pub by_env: std::sync::atomic::AtomicBool,
    /// Whether the agent is one replica of several sharing stacks through Leases: holding none
    /// is then standing by, and ready.
    pub coordinated: std::sync::atomic::AtomicBool,
}

impl Hub {
    pub fn new(
        metrics: Arc<Metrics>,
        webhook_secret: Option<Redacted<Vec<u8>>>,
        api_token: Option<Redacted<Vec<u8>>>,
    ) -> Hub {
        Hub {
            metrics,
            webhook_secret,
            api_token,
            envs: RwLock::new(Vec::new()),
            by_env: std::sync::atomic::AtomicBool::new(false),
            coordinated: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Serves `env` (replacing an earlier side of the same environment).
    pub fn add(&self, env: Arc<AgentHttp>) {
        let mut envs = self.envs.write().expect("environments");
        envs.retain(|e| (&e.stack, &e.env) != (&env.stack, &env.env));
        envs.push(env);
        envs.sort_by(|a, b| (&a.stack, &a.env).cmp(&(&b.stack, &b.env)));
    }

    /// Stops serving environment `name` of `stack`.
    pub fn remove(&self, stack: Option<&str>, name: &str) {
        self.envs
            .write()
            .expect("environments")
            .retain(|e| !(e.stack.as_deref() == stack && e.env.as_deref() == Some(name)));
    }

    /// Stops serving every environment of `stack` (`None`: the `--repo` stack), whose Lease
    /// went to another replica.
    pub fn remove_stack(&self, stack: Option<&str>) {
        self.envs
            .write()
            .expect("environments")
            .retain(|e| e.stack.as_deref() != stack);
    }

    /// The names of the stacks served (an agent of several stacks).
    pub fn stacks(&self) -> Vec<String> {
        let mut names: Vec<String> = self.envs().iter().filter_map(|e| e.stack.clone()).collect();
        names.dedup();
        names
    }

    /// Every environment's side, by name.
    pub fn envs(&self) -> Vec<Arc<AgentHttp>> {
        self.envs.read().expect("environments").clone()
    }

    /// Whether the status API answers by environment: the agent converges environments, and
    /// not just the one named with `--env`.
    pub fn by_env(&self) -> bool {
        self.by_env.load(std::sync::atomic::Ordering::Relaxed)
            && self.envs().iter().any(|e| e.env.is_some())
    }

    /// Asks every environment's loop to fetch (a webhook).
    pub fn trigger_all(&self, t: &Trigger) {
        for e in self.envs() {
            let _ = e.trigger.try_send(t.clone());
        }
    }

    /// Why the agent is not ready, or `None` when every environment is.
    pub fn not_ready(&self) -> Option<String> {
        self.not_ready_of(&self.envs())
    }

    /// Why some of `envs` are not ready, or `None` when all are.
    pub fn not_ready_of(&self, envs: &[Arc<AgentHttp>]) -> Option<String> {
        if envs.is_empty() {
            if self.coordinated.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            return Some("no revision read yet".into());
        }
        let why: Vec<String> = envs
            .iter()
            .filter(|e| !e.ready.load(std::sync::atomic::Ordering::Relaxed))
            .map(|e| {
                let why = e
                    .not_ready
                    .lock()
                    .expect("not ready")
                    .clone()
                    .unwrap_or_else(|| "no successful sync yet".into());
                let why = match &e.env {
                    Some(name) => format!("environment {name}: {why}"),
                    None => why,
                };
                match &e.stack {
                    Some(stack) => format!("stack {stack}: {why}"),
                    None => why,
                }
            })
            .collect();
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// The environment `?env=` names of the stack `?stack=` names, or the only one.
    ///
    /// # Errors
    /// An answer for the client: no such stack or environment (naming the known ones), or
    /// several and none named.
    pub fn pick(
        &self,
        stack: Option<&str>,
        env: Option<&str>,
    ) -> Result<Arc<AgentHttp>, NoSuchEnv> {
        let stacks = self.stacks();
        let envs: Vec<Arc<AgentHttp>> = match stack {
            Some(name) => {
                let envs: Vec<_> = self
                    .envs()
                    .into_iter()
                    .filter(|e| e.stack.as_deref() == Some(name))
                    .collect();
                if envs.is_empty() {
                    return Err(refuse(
                        StatusCode::NOT_FOUND,
                        format!(
                            "this agent converges no stack \"{name}\" (it converges: {}); another replica may hold it",
                            stacks.join(", ")
                        ),
                    ));
                }
                envs
            }
            None if stacks.len() > 1 => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the agent converges several stacks ({}): add ?stack=NAME",
                        stacks.join(", ")
                    ),
                ))
            }
            None => self.envs(),
        };
        let known = || {
            envs.iter()
                .filter_map(|e| e.env.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match env {
            Some(name) => envs
                .iter()
                .find(|e| e.env.as_deref() == Some(name))
                .cloned()
                .ok_or_else(|| {
                    refuse(
                        StatusCode::NOT_FOUND,
                        format!(
                            "the agent converges no environment \"{name}\" (it converges: {})",
                            known()
                        ),
                    )
                }),
            None => match envs.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no revision read yet".to_string(),
                )),
                _ => Err(refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the agent converges several environments ({}): add ?env=NAME",
                        known()
                    ),
                )),
            },
        }
    }
}

/// Why a request names no environment the agent converges: the status and a message that
/// lists the ones it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSuchEnv {
    pub code: StatusCode,
    pub message: String,
}

fn refuse(code: StatusCode, message: String) -> NoSuchEnv {
    NoSuchEnv { code, message }
}

impl IntoResponse for NoSuchEnv {
    fn into_response(self) -> Response {
        (
            self.code,
            axum::Json(serde_json::json!({ "message": self.message })),
        )
            .into_response()
    }
}

/// The environment a request is about: `?env=NAME`, or the only one.
pub struct One(pub Arc<AgentHttp>);

impl FromRequestParts<Arc<Hub>> for One {
    type Rejection = NoSuchEnv;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<One, NoSuchEnv> {
        let query = parts.uri.query();
        let stack = query.and_then(stack_of);
        let env = query.and_then(env_of);
        hub.pick(stack.as_deref(), env.as_deref()).map(One)
    }
}

/// `env` from a query string (other parameters are the handler's). Environment names are
/// plain labels: nothing to decode.
pub(super) fn env_of(query: &str) -> Option<String> {
    param(query, "env")
}

/// `stack` from a query string. Stack names are plain labels too.
pub(super) fn stack_of(query: &str) -> Option<String> {
    param(query, "stack")
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}
