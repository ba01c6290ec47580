//! Asking a person: the gates' approver (pre-approved by flag, else asked on the terminal,
//! refused without one) and the yes/no question before a run or a rollback.

use std::io::{IsTerminal, Write};

use planx::engine::{Approver, BoxFuture, Preapproved};

/// Approves gates named with `--approve` (or all with `--approve-all`), asks for the others on
/// the terminal, and refuses them without one.
pub struct TerminalApprover {
    pub preapproved: Preapproved,
}

impl Approver for TerminalApprover {
    fn approve<'a>(&'a self, step: &'a str, message: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if self.preapproved.all || self.preapproved.steps.iter().any(|s| s == step) {
                return true;
            }
            if !std::io::stdin().is_terminal() {
                eprintln!(
                    "gate `{step}`: {message} (not approved: pass --approve {step} or --approve-all)"
                );
                return false;
            }
            let question = format!("gate `{step}`: {message}\napprove? [y/N] ");
            tokio::task::spawn_blocking(move || ask(&question))
                .await
                .unwrap_or(false)
        })
    }
}

/// Ask a yes/no question on the terminal; anything but y/yes is no.
pub fn ask(question: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}

/// Whether to go on: `--yes`, else a question on the terminal; without a terminal, a usage
/// error that names the flag.
pub fn confirm(
    yes: bool,
    question: &str,
    flag_hint: &str,
) -> Result<bool, planx::error::PlanxError> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(planx::error::PlanxError::input(format!(
            "planx asks before it changes anything; {flag_hint}"
        )));
    }
    Ok(ask(question))
}
