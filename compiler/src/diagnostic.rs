//! Diagnostics as values: every problem the compiler finds, with a stable code, a position,
//! a lowercase message and optional help. Passes collect them; only the binary picks an exit code.

use crate::source::Span;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

macro_rules! codes {
    ($( $variant:ident = $code:literal, $severity:ident, $title:literal; )*) => {
        /// Stable diagnostic codes. Never renumber one: CI configurations and docs refer to them.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
            schemars::JsonSchema,
        )]
        pub enum Code {
            $( $variant, )*
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$( Code::$variant, )*];

            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $code, )* }
            }

            pub fn severity(self) -> Severity {
                match self { $( Code::$variant => Severity::$severity, )* }
            }

            /// A short title, used by the book's table of codes.
            pub fn title(self) -> &'static str {
                match self { $( Code::$variant => $title, )* }
            }

            pub fn parse(code: &str) -> Option<Code> {
                match code { $( $code => Some(Code::$variant), )* _ => None }
            }
        }
    };
}

codes! {
    Io = "E000", Error, "a file cannot be read";
    YamlSyntax = "E001", Error, "yaml syntax error";
    DuplicateKey = "E002", Error, "duplicate mapping key";
    UnknownField = "E003", Error, "unknown field";
    MissingField = "E004", Error, "missing field";
    WrongType = "E005", Error, "value of the wrong type";
    UnknownAction = "E006", Error, "unknown action";
    WrongTargetKind = "E007", Error, "action on a target of the wrong kind";
    DuplicateId = "E008", Error, "duplicate id";
    UnknownDependency = "E009", Error, "unknown dependency";
    UnknownReference = "E010", Error, "unknown reference";
    Cycle = "E011", Error, "dependency cycle";
    UnusedParam = "W012", Warning, "unused parameter";
    SecretLiteral = "E013", Error, "secret given as a literal";
    UnsupportedVersion = "E014", Error, "unsupported plan version";
    InvalidValue = "E015", Error, "invalid value";
    MissingParam = "E016", Error, "required parameter without value";
    Expression = "E017", Error, "invalid expression";
    Module = "E018", Error, "module cannot be used";
    InvalidInput = "E019", Error, "action input does not fit the action";
    ObjectMissing = "E020", Error, "object missing from the state";
    EditImpossible = "E021", Error, "edit cannot be made";
    StateFile = "E022", Error, "state file unusable";
    BackupMissing = "L101", Error, "destructive step without a backup before it";
    SnapshotBeforeWritesBlocked = "L102", Error, "snapshot taken before writes are blocked";
    RestoreBeforeSourceDisabled = "L103", Error, "restore before the source vault is disabled";
    FollowerMigrationAfterStepDown = "L104", Error, "follower migration after the step-down";
    RemoveDisabledSealBeforeStepDown = "L105", Error, "disabled seal block removed before the step-down";
    OldKeyServiceReleasedEarly = "L106", Error, "old key service not kept until the end";
    TransferSourceLeftRunning = "L107", Error, "source of a snapshot transfer never disabled";
    RaftLeaderRemovedBeforeStepDown = "L108", Error, "raft leader removed before leadership moved";
    RaftPeerStoppedBeforeRemoved = "L109", Error, "raft peers stopped before they are removed";
    RaftLeadershipMovedBeforePromotion = "L110", Error, "leadership moved before the joined nodes vote";
    RaftVotersEven = "L111", Error, "raft voters even for two membership changes in a row";
}

impl Code {
    /// Ordering lints a step may `allow:`.
    pub fn is_lint(self) -> bool {
        self.as_str().starts_with('L')
    }
}

/// One problem found in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    /// Lowercase, no trailing period.
    pub message: String,
    pub span: Option<Span>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, span: impl Into<Option<Span>>, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            span: span.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// The diagnostics of one compilation, in the order found.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn error(&mut self, code: Code, span: impl Into<Option<Span>>, message: impl Into<String>) {
        self.push(Diagnostic::new(code, span, message));
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// Sorted by file, line and column, then code, with exact repeats removed: a stable order
    /// for review and tests.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items
            .sort_by(|a, b| (a.span, a.code, &a.message).cmp(&(b.span, b.code, &b.message)));
        self.items.dedup();
        self.items
    }
}
