//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::graph::GraphFormat;
use crate::logging::LogFormat;

/// strata converges a whole system from one Git repository: Terraform layers first, Kubernetes
/// layers second, in the order of a dependency graph.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Cli {
    /// More log output, a level per -v: warnings → info → debug → trace. The agent (run,
    /// bootstrap) starts at info. STRATA_LOG overrides; colour only on a terminal (NO_COLOR).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Keep the state (records, approvals, pins, reports, the stack lock, and Terraform state
    /// of layers without a backend) in PostgreSQL instead of the state dir:
    /// postgres://USER@HOST:PORT/DB. Put the password in PGPASSWORD or ~/.pgpass.
    #[arg(
        long,
        global = true,
        env = "STRATA_STATE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub state: Option<crate::store::StateUrl>,

    /// With --state: the namespace of the database this stack's state is kept under; each stack
    /// sharing a database needs its own.
    #[arg(long, global = true, env = "STRATA_STATE_NAMESPACE", value_name = "NAME", default_value = crate::store::DEFAULT_NAMESPACE)]
    pub state_namespace: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a stack: every problem at once, each with file:line:col.
    Validate(StackArgs),
    /// Show the layers' waves and the edges between them.
    Graph {
        #[command(flatten)]
        stack: StackArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// Plan every affected layer in graph order; exit 0 nothing to do, 2 changes, 1 error.
    Plan {
        #[command(flatten)]
        source: SourceArgs,
        /// Plan every layer, affected or not.
        #[arg(long)]
        all: bool,
        /// Force every field-manager conflict of Kubernetes layers, this run only, as
        /// `drift = "correct"` does: out-of-band edits of fields Git did not change are reverted
        /// too (without it, only fields Git changed are taken).
        #[arg(long)]
        force_conflicts: bool,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Converge the stack: apply every layer with changes, in graph order.
    Apply {
        #[command(flatten)]
        source: SourceArgs,
        /// Apply without asking (required without a terminal).
        #[arg(long)]
        auto_approve: bool,
        /// Also apply this layer although it has `apply = "manual"` (repeatable).
        #[arg(long = "approve", value_name = "LAYER")]
        approve: Vec<String>,
        /// Plan every layer, affected or not.
        #[arg(long)]
        all: bool,
        /// How long to wait for another apply's lock ("30s").
        #[arg(long, default_value = "0s")]
        lock_timeout: String,
        /// Take over existing Kubernetes objects that another stack, or no stack, manages (each
        /// one is reported); without it only objects annotated strata.dev/adopt: "true" are.
        #[arg(long)]
        adopt: bool,
        /// Force every field-manager conflict of Kubernetes layers, this run only, as
        /// `drift = "correct"` does: out-of-band edits of fields Git did not change are reverted
        /// too (without it, only fields Git changed are taken).
        #[arg(long)]
        force_conflicts: bool,
        /// Init this Terraform layer afresh: empty its data dir (providers, modules, backend
        /// settings) and run `terraform init` again; its state is kept (repeatable).
        #[arg(long = "reinit", value_name = "LAYER")]
        reinit: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the manifests that run the agent in a cluster (Namespace, ServiceAccount,
    /// least-privilege RBAC, Deployment, Service, NetworkPolicy), to pipe to `kubectl apply -f -`.
    Install {
        /// Print the manifests (the only mode: strata never applies them itself).
        #[arg(long)]
        export: bool,
        #[command(flatten)]
        options: crate::install::InstallOptions,
    },
    /// Tear the stack down: Kubernetes layers first, then Terraform layers, each after
    /// everything that depends on it; the plan is shown first.
    Destroy {
        #[command(flatten)]
        source: SourceArgs,
        /// Destroy without asking (required without a terminal).
        #[arg(long)]
        auto_approve: bool,
        /// How long to wait for another writer's lock ("30s").
        #[arg(long, default_value = "0s")]
        lock_timeout: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// terradiff + kubediff: the live system against the last converged revision.
    Diff {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        #[arg(long)]
        markdown: bool,
    },
    /// Per layer: last converged revision, last result, drift state, last run.
    Status {
        #[arg(long, default_value = ".strata", env = "STRATA_STATE_DIR")]
        state_dir: PathBuf,
        /// The environment; without it, every environment the state dir holds.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// The stack, for the state of an agent converging several (`stack` blocks in its
        /// --config): its state in STATE/stacks/NAME.
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The runs recorded in the state dir, newest last.
    History {
        #[arg(long, default_value = ".strata", env = "STRATA_STATE_DIR")]
        state_dir: PathBuf,
        /// The environment (with several `environment` blocks).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// The stack, for the state of an agent converging several (`stack` blocks in its
        /// --config): its state in STATE/stacks/NAME.
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// The agent: poll (and take webhooks), converge new revisions, watch for drift, alert.
    Run(AgentArgs),
    /// Converge everything from an empty state dir into empty targets, then exit (or --watch).
    Bootstrap {
        #[command(flatten)]
        agent: AgentArgs,
        /// Keep running as the agent afterwards.
        #[arg(long)]
        watch: bool,
    },
    /// Approve the plan an `apply = "manual"` layer (or an orphaned Terraform layer's destroy)
    /// waits with: in the state dir, or through a running agent's API.
    Approve {
        /// The layer with its kind: `terraform.NAME` or `kubernetes.NAME`.
        layer: String,
        #[arg(long, default_value = ".strata", env = "STRATA_STATE_DIR")]
        state_dir: PathBuf,
        /// The agent's address (e.g. http://127.0.0.1:9090); needs --api-token-file.
        #[arg(long, requires = "api_token_file")]
        agent: Option<String>,
        /// The file holding the agent's API token (as given to `strata run --api-token-file`).
        #[arg(long)]
        api_token_file: Option<PathBuf>,
        /// The digest of the plan to approve (as `plan` and `status` show it); refused when
        /// another plan waits. Default: the plan waiting now.
        #[arg(long, value_name = "DIGEST")]
        plan: Option<String>,
        /// The environment (with several `environment` blocks).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// The stack, for an agent converging several (`stack` blocks in its --config).
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
    },
    /// Converge to an earlier revision and pin the agent there until `strata resume`.
    Rollback {
        #[command(flatten)]
        repo: RepoArgs,
        /// The commit (or tag) to go back to.
        #[arg(long)]
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Unpin: the agent follows the source again.
    Resume {
        #[arg(long, default_value = ".strata", env = "STRATA_STATE_DIR")]
        state_dir: PathBuf,
        /// The environment (with several `environment` blocks).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// The stack, for the state of an agent converging several (`stack` blocks in its
        /// --config): its state in STATE/stacks/NAME.
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
    },
    /// Print the latest drift report.
    Report {
        #[arg(long, default_value = ".strata", env = "STRATA_STATE_DIR")]
        state_dir: PathBuf,
        /// The environment (with several `environment` blocks).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// The stack, for the state of an agent converging several (`stack` blocks in its
        /// --config): its state in STATE/stacks/NAME.
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Run a local Kubernetes API server for tests and demos (no pods run).
    Devcluster(DevclusterArgs),
    /// Git sources: fetch, pin and inspect.
    #[command(subcommand)]
    Source(SourceCommand),
    /// Layer state: recover what terraform could not save.
    #[command(subcommand)]
    State(StateCommand),
    /// Image automation: new tags in a registry become commits of the marked lines.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Copy vars values (default: those marked `# strata:image`) from environment FROM's block
    /// to TO's in one commit, pushed to the branch (or --push-branch for review); prints it.
    Promote(PromoteArgs),
}

/// `strata promote`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PromoteArgs {
    /// The environment whose values are copied.
    pub from: String,
    /// The environment that receives them.
    pub to: String,
    /// The vars to copy, comma-separated (default: every value carrying a strata:image marker).
    #[arg(long, value_delimiter = ',', value_name = "VAR,...")]
    pub vars: Option<Vec<String>>,
    /// Push the commit to this branch, for review, instead of the tracked branch.
    #[arg(long, value_name = "NAME")]
    pub push_branch: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Bounds each git command (clone, push).
    #[arg(long, default_value = "2m")]
    pub git_timeout: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Per image: the tag its policy selects, every marker's value and what would change. Exit
    /// 0 up to date, 2 updates available, 1 error (a registry unreachable, access refused).
    Scan {
        #[command(flatten)]
        source: SourceArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Commit the selected tags into the marked lines and push (to the writeback branch, or its
    /// push_branch for review); prints the new commit.
    Update {
        #[command(flatten)]
        repo: RepoArgs,
        /// Bounds each git command (clone, push).
        #[arg(long, default_value = "2m")]
        git_timeout: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Push a Terraform layer's unsaved state (the errored.tfstate terraform left when it could
    /// not write to its backend) with `terraform state push`; then the layer applies again.
    Push {
        /// The layer: `net` or `terraform.net`.
        layer: String,
        #[command(flatten)]
        source: SourceArgs,
        /// How long to wait for another apply's lock ("30s").
        #[arg(long, default_value = "0s")]
        lock_timeout: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where a command reads the stack from: a Git repository (pinned to a commit), or a directory.
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    /// The Git repository: a local path, file://, https://, ssh:// or user@host:path.
    #[arg(long)]
    pub repo: String,
    /// Branch, tag or full commit id (default: the remote's HEAD).
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// The stack's directory inside the repository.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Refuse commits not signed by a key in ssh:ALLOWED_SIGNERS_FILE or gpg:KEYRING_FILE.
    #[arg(long)]
    pub verify: Option<crate::source::VerifyPolicy>,
    /// strata's state directory (mirrors, revisions, layer state).
    #[arg(long, default_value = ".strata", env = "STRATA_STATE_DIR")]
    pub state_dir: PathBuf,
    /// An age key file to decrypt SOPS-encrypted files in layers with (YAML/JSON manifests,
    /// `*.tfvars.json`).
    #[arg(long, env = "SOPS_AGE_KEY_FILE")]
    pub age_key_file: Option<PathBuf>,
    /// The environment (an `environment` block); required when the stack declares several.
    /// `run` and `bootstrap` take it several times (default: every environment).
    #[arg(long, value_name = "NAME")]
    pub env: Vec<String>,
}

impl RepoArgs {
    /// The one environment named, if any.
    ///
    /// # Errors
    /// `--env` given more than once to a command that works on one environment.
    pub fn one_env(&self) -> Result<Option<String>, crate::error::Error> {
        match self.env.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            several => Err(crate::error::Error::Usage(format!(
                "--env is given {} times ({}): this command works on one environment",
                several.len(),
                several.join(", ")
            ))),
        }
    }

    /// The stack at this repository as a command reading it sees it: `env` selected, no age
    /// key, the stack found in the repository (not a local dir).
    pub fn source(&self, env: Option<String>) -> SourceArgs {
        SourceArgs {
            stack: None,
            repo: Some(self.repo.clone()),
            reference: self.reference.clone(),
            path: self.path.clone(),
            verify: self.verify.clone(),
            state_dir: self.state_dir.clone(),
            age_key_file: None,
            env,
        }
    }
}

/// Where a converging command reads the stack: a directory (`--stack`, default `.`) or a Git
/// repository pinned to a commit (`--repo`).
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// The stack directory (holding strata.hcl).
    #[arg(long, conflicts_with = "repo")]
    pub stack: Option<PathBuf>,
    /// The Git repository: a local path, file://, https://, ssh:// or user@host:path.
    #[arg(long)]
    pub repo: Option<String>,
    /// Branch, tag or full commit id (default: the remote's HEAD).
    #[arg(long = "ref", requires = "repo")]
    pub reference: Option<String>,
    /// The stack's directory inside the repository.
    #[arg(long, requires = "repo")]
    pub path: Option<PathBuf>,
    /// Refuse commits not signed by a key in ssh:ALLOWED_SIGNERS_FILE or gpg:KEYRING_FILE.
    #[arg(long, requires = "repo")]
    pub verify: Option<crate::source::VerifyPolicy>,
    /// strata's state directory (mirrors, revisions, layer state, records).
    #[arg(long, default_value = ".strata", env = "STRATA_STATE_DIR")]
    pub state_dir: PathBuf,
    /// An age key file to decrypt SOPS-encrypted files in layers with (YAML/JSON manifests,
    /// `*.tfvars.json`).
    #[arg(long, env = "SOPS_AGE_KEY_FILE")]
    pub age_key_file: Option<PathBuf>,
    /// The environment (an `environment` block). Required to change a stack that declares
    /// several; `plan` and `diff` without it show every one.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Fetch the source and show the commit it resolves to, its signature, and what changed.
    Show {
        #[command(flatten)]
        repo: RepoArgs,
        /// Show the layers affected since this commit or ref.
        #[arg(long)]
        since: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// The stack directory (holding strata.hcl).
    #[arg(long, default_value = ".")]
    pub stack: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DevclusterArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Where to write the kubeconfig (mode 0600) once listening.
    #[arg(long)]
    pub kubeconfig_out: PathBuf,
    /// Keep objects in this file across restarts.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Report workloads ready after this delay ("2s"), or "never".
    #[arg(long, default_value = "1s")]
    pub simulate_ready: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Markdown,
}

/// The agent's flags.
#[derive(Debug, Clone, clap::Args)]
// `--repo` may be left out when `--config` declares the stacks.
#[command(mut_arg("repo", |a| a.required(false).default_value("")))]
pub struct AgentArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// HTTP address for /healthz, /readyz, /metrics, /api/v1/status and /hooks/git.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: std::net::SocketAddr,
    /// A file holding the secret GitHub-style webhooks are signed with (X-Hub-Signature-256).
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// A file holding the bearer token the API's mutating endpoints (approvals) require; without
    /// it they refuse every request.
    #[arg(long)]
    pub api_token_file: Option<PathBuf>,
    /// Alert sinks and Git writeback (HCL: alert "webhook" "ops" { url = "..." }).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override the stack's poll_interval ("30s").
    #[arg(long)]
    pub poll_interval: Option<String>,
    /// Override the stack's drift_interval ("5m").
    #[arg(long)]
    pub drift_interval: Option<String>,
    /// On SIGTERM, how long a running apply may finish before it is interrupted.
    #[arg(long, default_value = "30s")]
    pub shutdown_grace: String,
    /// How long the source or a cluster may stay unreachable before a `degraded` alert and a
    /// failing /readyz.
    #[arg(long, default_value = "5m")]
    pub unreachable_after: String,
    /// At most one `diff` alert per layer in this interval.
    #[arg(long, default_value = "1h")]
    pub diff_alert_interval: String,
    /// With several `stack` blocks in --config: at most this many stacks sync or check drift
    /// at once (0: no bound).
    #[arg(long, default_value_t = 4)]
    pub max_concurrent_stacks: usize,
    /// Share the stacks with other replicas: `kubernetes` (a Lease per stack).
    #[arg(long, value_enum)]
    pub coordination: Option<Coordination>,
    /// The namespace of the Leases.
    #[arg(long, default_value = "strata-system")]
    pub lease_namespace: String,
    /// The kubeconfig of the Leases' cluster (default: KUBECONFIG, else the in-cluster
    /// service account).
    #[arg(long)]
    pub coordination_kubeconfig: Option<PathBuf>,
    /// This replica's identity in the Leases (default: host name and process id).
    #[arg(long)]
    pub replica_id: Option<String>,
    /// How long a Lease lasts unrenewed; renewed every third of it.
    #[arg(long, default_value = "15s")]
    pub lease_duration: String,
}

/// How agent replicas share stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Coordination {
    /// A `coordination.k8s.io/v1` Lease per stack.
    Kubernetes,
}
