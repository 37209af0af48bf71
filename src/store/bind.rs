//! `--state postgres://…` on the command line: open the store, mount a private local working dir
//! on it, and run the command with that dir as its state dir.

use std::path::{Path, PathBuf};

use crate::cli::{Command, ImageCommand, SourceCommand, StateCommand};

use super::{mount, StateUrl, Store, StoreError};

/// The environment variable `--state` is read from.
const STATE_ENV: &str = "STRATA_STATE";

/// The state dir a command uses when none is given.
const DEFAULT_STATE_DIR: &str = ".strata";

/// Why `--state` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "--state and --state-dir are both given ({dir}): the state lives in one place, give one"
    )]
    Both { dir: String },
    #[error("--state-namespace {0:?} is not a namespace: use 1 to 40 lowercase letters, digits, `_` and `-`")]
    Namespace(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("failed to create the local working dir {} for the caches of {url}: {source}", dir.display())]
    WorkDir {
        dir: PathBuf,
        url: StateUrl,
        #[source]
        source: std::io::Error,
    },
}

/// Namespaces end up in PostgreSQL schema names (see `terraform::backend::schema_name`), where
/// distinct names must stay distinct.
fn valid_namespace(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The state dir argument of `command`, if it has one.
fn state_dir_of(command: &mut Command) -> Option<&mut PathBuf> {
    Some(match command {
        Command::Plan { source, .. }
        | Command::Apply { source, .. }
        | Command::Destroy { source, .. }
        | Command::Diff { source, .. }
        | Command::State(StateCommand::Push { source, .. })
        | Command::Image(ImageCommand::Scan { source, .. }) => &mut source.state_dir,
        Command::Status { state_dir, .. }
        | Command::History { state_dir, .. }
        | Command::Approve { state_dir, .. }
        | Command::Resume { state_dir, .. }
        | Command::Report { state_dir, .. } => state_dir,
        Command::Run(agent) | Command::Bootstrap { agent, .. } => &mut agent.repo.state_dir,
        Command::Rollback { repo, .. }
        | Command::Source(SourceCommand::Show { repo, .. })
        | Command::Image(ImageCommand::Update { repo, .. }) => &mut repo.state_dir,
        Command::Promote(args) => &mut args.repo.state_dir,
        Command::Validate(_)
        | Command::Graph { .. }
        | Command::Devcluster(_)
        | Command::Install { .. } => return None,
    })
}

/// Whether `command` may run terraform on the state database's `pg` backend: the writers, for
/// which the backend's shared sequence is created first.
fn runs_terraform(command: &Command) -> bool {
    matches!(
        command,
        Command::Plan { .. }
            | Command::Apply { .. }
            | Command::Destroy { .. }
            | Command::Diff { .. }
            | Command::State(StateCommand::Push { .. })
            | Command::Run(_)
            | Command::Bootstrap { .. }
            | Command::Rollback { .. }
            | Command::Promote(_)
    )
}

/// Where the caches of the state at `url` are kept on this machine: `$XDG_STATE_HOME/strata/pg-…`
/// (`~/.local/state/strata/pg-…` without it or when it is relative), named by the URL with its password masked and the
/// namespace, so one machine working on several databases or stacks keeps their caches apart.
pub fn work_dir(url: &StateUrl, namespace: &str) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{url}\0{namespace}").as_bytes());
    let name = format!(
        "pg-{}",
        digest[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // A relative XDG_STATE_HOME is to be ignored (XDG base dir spec): it would move with the
    // working directory. Without HOME either, a dir named for this user under the temp dir.
    let home = |v: std::ffi::OsString| Path::new(&v).join(".local/state");
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(home)
                .filter(|p| p.is_absolute())
        })
        .unwrap_or_else(|| {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            std::env::temp_dir().join(format!("strata-{uid}"))
        });
    base.join("strata").join(name)
}

/// Opens the store at `url` and points `command` at a local working dir mounted on it.
///
/// # Guarantees
/// The working dir is 0700; documents under it are read and written in the store from now on.
/// `STRATA_STATE` is removed from the environment: no child process sees the URL.
/// A command without a state dir is left alone (nothing is opened).
///
/// # Errors
/// [`BindError::Both`] when `--state-dir` is given too; [`BindError::Store`] when the database
/// cannot be reached or migrated (naming the URL, password masked).
pub fn bind(
    url: &StateUrl,
    namespace: &str,
    command: &mut Command,
) -> Result<Option<Store>, BindError> {
    // Read once (clap did): terraform, its providers and provisioners, kubectl and sops inherit
    // strata's environment, and none of them needs the URL and its password. Removed here, on
    // the main thread, before the store's thread or any runtime starts.
    let from_env = std::env::var(STATE_ENV).is_ok_and(|v| v == url.expose());
    std::env::remove_var(STATE_ENV);
    if url.has_password() && !from_env {
        tracing::warn!(
            "the --state URL {url} holds a password on the command line, where other users of \
             this machine can read it (ps); give it in PGPASSWORD or ~/.pgpass instead"
        );
    }
    let writer = runs_terraform(command);
    let Some(slot) = state_dir_of(command) else {
        return Ok(None);
    };
    if slot.as_os_str() != DEFAULT_STATE_DIR {
        return Err(BindError::Both {
            dir: slot.display().to_string(),
        });
    }
    if !valid_namespace(namespace) {
        return Err(BindError::Namespace(namespace.to_string()));
    }
    let store = Store::open(url)?.with_namespace(namespace);
    if writer {
        store.ensure_terraform_sequence();
    }
    let dir = work_dir(url, namespace);
    crate::util::fs::create_private_dir_all(&dir).map_err(|source| BindError::WorkDir {
        dir: dir.clone(),
        url: url.clone(),
        source,
    })?;
    mount(&dir, store.clone())?;
    *slot = dir;
    Ok(Some(store))
}

impl From<BindError> for crate::error::Error {
    fn from(e: BindError) -> crate::error::Error {
        match e {
            BindError::Store(e) => crate::error::Error::State(e.into()),
            other => crate::error::Error::Usage(other.to_string()),
        }
    }
}
