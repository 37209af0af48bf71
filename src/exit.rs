//! The process exit status, like `terraform plan -detailed-exitcode`.

/// What a command's outcome means to a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: ok, converged, no drift.
    Success,
    /// 1: an error.
    Failure,
    /// 2: changes pending or drift found.
    Changes,
    /// 130: stopped by a signal after interrupting running work.
    Interrupted,
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Changes => 2,
            ExitStatus::Interrupted => 130,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(s.code() as u8)
    }
}
