//! Why a layer is not converged after an apply, as typed data for `status.json`: from its
//! report, and for a layer the walk did not run, from the walk's typed cause (never from text).

use super::record::{LayerReport, LayerStatus};
use super::run::Hold;
use crate::graph::walk::{Cause, Outcome};
use crate::state::stack_status::Reason;

/// The reason a layer reported as `report` is not converged; `None` when it is.
pub(super) fn of(report: &LayerReport, outcome: Option<&Outcome<Hold>>) -> Option<Reason> {
    match report.status {
        LayerStatus::Applied
        | LayerStatus::Unchanged
        | LayerStatus::NotAffected
        | LayerStatus::Destroyed
        | LayerStatus::Changes => None,
        LayerStatus::AwaitingApproval => Some(Reason::AwaitingApproval),
        LayerStatus::Waiting => Some(Reason::Waiting {
            on: report.waiting_on.clone(),
        }),
        LayerStatus::Failed => Some(Reason::Failed {
            error: first_line(report.detail.as_deref()),
        }),
        LayerStatus::Interrupted => Some(Reason::Interrupted),
        LayerStatus::Skipped => Some(match outcome {
            Some(Outcome::Skipped(Cause::Failed(up))) => Reason::UpstreamFailed {
                upstream: up.to_string(),
            },
            Some(Outcome::Skipped(Cause::Blocked(up, hold))) => Reason::UpstreamHeld {
                upstream: up.to_string(),
                why: hold.to_string(),
            },
            // Skipped without a cause from the walk: the report's own words.
            _ => Reason::Failed {
                error: first_line(report.detail.as_deref()),
            },
        }),
    }
}

fn first_line(text: Option<&str>) -> String {
    text.and_then(|t| t.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("unknown error")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::inputs::{Waiting, WaitingOn};
    use crate::stack::LayerId;

    fn report(status: LayerStatus) -> LayerReport {
        LayerReport::new(LayerId::kubernetes("apps"), 2, status)
    }

    #[test]
    fn each_way_a_layer_is_held_back_is_typed() {
        assert_eq!(of(&report(LayerStatus::Applied), None), None);
        assert_eq!(of(&report(LayerStatus::NotAffected), None), None);
        assert_eq!(
            of(&report(LayerStatus::AwaitingApproval), None),
            Some(Reason::AwaitingApproval)
        );
        let waits = vec![Waiting {
            on: LayerId::terraform("cluster"),
            output: "outputs.kubeconfig".into(),
        }];
        let mut waiting = report(LayerStatus::Waiting);
        waiting.waiting_on = waits.clone();
        assert_eq!(
            of(&waiting, None),
            Some(Reason::Waiting { on: waits.clone() })
        );
        let mut failed = report(LayerStatus::Failed);
        failed.detail = Some("\nterraform apply failed\n  details".into());
        assert_eq!(
            of(&failed, None),
            Some(Reason::Failed {
                error: "terraform apply failed".into()
            })
        );
        let up = LayerId::terraform("cluster");
        let skipped = report(LayerStatus::Skipped);
        assert_eq!(
            of(&skipped, Some(&Outcome::Skipped(Cause::Failed(up.clone())))),
            Some(Reason::UpstreamFailed {
                upstream: "terraform.cluster".into()
            })
        );
        assert_eq!(
            of(
                &skipped,
                Some(&Outcome::Skipped(Cause::Blocked(
                    up.clone(),
                    Hold::Approval
                )))
            ),
            Some(Reason::UpstreamHeld {
                upstream: "terraform.cluster".into(),
                why: "awaiting approval".into()
            })
        );
        let held = Hold::Waiting(WaitingOn(waits));
        assert_eq!(
            of(&skipped, Some(&Outcome::Skipped(Cause::Blocked(up, held)))),
            Some(Reason::UpstreamHeld {
                upstream: "terraform.cluster".into(),
                why: "waiting on terraform.cluster (outputs.kubeconfig unknown until applied)"
                    .into()
            })
        );
    }
}
