//! Cases of a key-access check or withdrawal, run as tables against the replay server: each
//! case serves its recordings, runs the check with its input, and asserts what came back (the
//! summary, or the error's message, whether it is transient, as an `ActionError` too), that no
//! planted secret shows in it, and which recorded exchanges were made. A failure names the case.

use std::fmt::{Debug, Display};

use planx::engine::ActionError;
use planx::keyservices::KeyServiceError;

use super::{Fixtures, Replay};

/// What a summary or an error message must be.
#[derive(Debug)]
pub enum Text {
    Is(String),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
}

pub fn is(text: impl Into<String>) -> Text {
    Text::Is(text.into())
}

pub fn contains(text: impl Into<String>) -> Text {
    Text::Contains(text.into())
}

pub fn starts_with(text: impl Into<String>) -> Text {
    Text::StartsWith(text.into())
}

pub fn ends_with(text: impl Into<String>) -> Text {
    Text::EndsWith(text.into())
}

impl Text {
    fn assert(&self, case: &str, actual: &str) {
        let holds = match self {
            Text::Is(expected) => actual == expected,
            Text::Contains(part) => actual.contains(part.as_str()),
            Text::StartsWith(start) => actual.starts_with(start.as_str()),
            Text::EndsWith(end) => actual.ends_with(end.as_str()),
        };
        assert!(holds, "{case}: {self:?} does not hold for:\n{actual}");
    }
}

enum Answer {
    Passes(Vec<Text>),
    Fails { text: Vec<Text>, transient: bool },
}

/// One case: its name, the recordings it serves (in order), the input the check is run with
/// (the step's `role:` or `identity:`), what must come back and which exchanges must be made.
pub struct Case {
    name: String,
    files: Vec<&'static str>,
    input: String,
    answer: Answer,
    calls: Option<Vec<&'static str>>,
}

/// A case that passes with a summary meeting every `text`.
pub fn passes(
    name: impl Into<String>,
    files: &[&'static str],
    input: impl Into<String>,
    text: impl IntoIterator<Item = Text>,
) -> Case {
    case(
        name,
        files,
        input,
        Answer::Passes(text.into_iter().collect()),
    )
}

/// A case that fails, not transiently, with a message meeting every `text`.
pub fn fails(
    name: impl Into<String>,
    files: &[&'static str],
    input: impl Into<String>,
    text: impl IntoIterator<Item = Text>,
) -> Case {
    let text = text.into_iter().collect();
    case(
        name,
        files,
        input,
        Answer::Fails {
            text,
            transient: false,
        },
    )
}

fn case(
    name: impl Into<String>,
    files: &[&'static str],
    input: impl Into<String>,
    answer: Answer,
) -> Case {
    Case {
        name: name.into(),
        files: files.to_vec(),
        input: input.into(),
        answer,
        calls: None,
    }
}

impl Case {
    /// The failure is transient: worth retrying.
    pub fn transient(mut self) -> Case {
        if let Answer::Fails { transient, .. } = &mut self.answer {
            *transient = true;
        }
        self
    }

    /// The exchanges made are exactly `calls` (`FILE#INDEX`), in order; without it, only every
    /// recorded exchange that is not optional.
    pub fn calls(mut self, calls: &[&'static str]) -> Case {
        self.calls = Some(calls.to_vec());
        self
    }
}

/// Run every case in turn, each on a replay server of its own with `fixtures`, through `check`
/// with the case's input; `planted` are the secrets no summary or error may show.
pub async fn run(
    fixtures: &Fixtures,
    planted: &[&str],
    cases: Vec<Case>,
    check: impl AsyncFn(&Replay, &str) -> Result<String, KeyServiceError>,
) {
    for case in cases {
        let name = case.name.as_str();
        let replay = Replay::start(fixtures, &case.files).await;
        match (check(&replay, &case.input).await, &case.answer) {
            (Ok(summary), Answer::Passes(text)) => {
                assert_hidden(name, planted, &summary);
                for text in text {
                    text.assert(name, &summary);
                }
            }
            (Err(error), Answer::Fails { text, transient }) => {
                assert_hidden(name, planted, &format!("{error}\n{error:?}"));
                let message = error.to_string();
                for text in text {
                    text.assert(name, &message);
                }
                assert_eq!(error.is_transient(), *transient, "{name}: transient");
                let action = ActionError::from(error);
                assert_eq!(action.transient, *transient, "{name}: transient action");
            }
            (Ok(summary), Answer::Fails { .. }) => panic!("{name}: passed: {summary}"),
            (Err(error), Answer::Passes(_)) => panic!("{name}: failed: {error}"),
        }
        let made = replay
            .try_finish()
            .unwrap_or_else(|failure| panic!("{name}: {failure}"));
        if let Some(calls) = &case.calls {
            let made: Vec<&str> = made.iter().map(|a| a.exchange.as_str()).collect();
            assert_eq!(&made, calls, "{name}: the exchanges made");
        }
    }
}

/// `error`'s message, checked with its Debug to hold none of `planted`.
pub fn message_without(planted: &[&str], error: &(impl Display + Debug)) -> String {
    let message = error.to_string();
    assert_hidden("the error", planted, &format!("{message}\n{error:?}"));
    message
}

fn assert_hidden(what: &str, planted: &[&str], text: &str) {
    for secret in planted {
        assert!(
            !text.contains(secret),
            "{what}: a secret leaked into: {text}"
        );
    }
}
