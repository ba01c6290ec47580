//! The intent journal of a run: an append-only log, synced to disk before and after every side
//! effect, of what planx is about to do and what it has done. Replaying it gives each step's
//! state; resume and rollback are computed from the plan and that state alone.
//!
//! Each line is one JSON record with a sequence number and a checksum. A crash can cut the last
//! line short: replay ignores a torn last line, and refuses a journal damaged anywhere else.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One thing that happened, or is about to happen, in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted {
        plan: String,
        /// SHA-256 of the saved plan (or compiled plan) the run applies.
        plan_sha256: String,
    },
    StepStarted {
        step: String,
        attempt: u32,
    },
    /// About to cause a side effect; written and synced before it.
    Intent {
        step: String,
        effect: String,
    },
    /// The side effect happened; written and synced right after it.
    Done {
        step: String,
        effect: String,
    },
    StepSucceeded {
        step: String,
        /// Non-sensitive outputs only: tokens never reach the journal.
        outputs: BTreeMap<String, serde_json::Value>,
    },
    StepFailed {
        step: String,
        error: String,
    },
    /// Stopped (Ctrl-C) with the step's side effect either done or not begun.
    StepInterrupted {
        step: String,
    },
    UndoStarted {
        step: String,
    },
    UndoFinished {
        step: String,
    },
    RunFinished {
        outcome: String,
    },
}

impl Event {
    /// A step's success, with the outputs the catalog marks sensitive (tokens) left out: they
    /// live in memory only and are never written.
    pub fn succeeded(
        step: &planc::model::CompiledStep,
        mut outputs: BTreeMap<String, serde_json::Value>,
    ) -> Event {
        let spec = planc::catalog::spec(step.action);
        outputs.retain(|name, _| {
            spec.outputs
                .iter()
                .any(|output| output.name == name && !output.sensitive)
        });
        Event::StepSucceeded {
            step: step.id.clone(),
            outputs,
        }
    }

    pub fn step(&self) -> Option<&str> {
        match self {
            Event::StepStarted { step, .. }
            | Event::Intent { step, .. }
            | Event::Done { step, .. }
            | Event::StepSucceeded { step, .. }
            | Event::StepFailed { step, .. }
            | Event::StepInterrupted { step }
            | Event::UndoStarted { step }
            | Event::UndoFinished { step } => Some(step),
            Event::RunStarted { .. } | Event::RunFinished { .. } => None,
        }
    }
}

/// A journal line: sequence number, event, checksum of both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    seq: u64,
    #[serde(flatten)]
    event: Event,
    sum: String,
}

fn checksum(seq: u64, event: &Event) -> String {
    let body = serde_json::to_string(&(seq, event)).expect("events serialise");
    planc::hex::encode(&Sha256::digest(body.as_bytes())[..8])
}

/// Why a journal cannot be used.
#[derive(Debug)]
pub enum JournalError {
    Io(PathBuf, std::io::Error),
    /// A damaged line that is not the last one.
    Corrupt {
        line: usize,
        reason: String,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io(path, error) => write!(f, "journal {}: {error}", path.display()),
            JournalError::Corrupt { line, reason } => write!(
                f,
                "the journal is damaged at line {line} ({reason}); it cannot be resumed safely: inspect the run directory"
            ),
        }
    }
}

/// An open journal, appending.
pub struct Journal {
    file: File,
    path: PathBuf,
    next_seq: u64,
}

impl Journal {
    /// Create a new journal (mode 0600); refuses to overwrite one.
    pub fn create(path: &Path) -> Result<Journal, JournalError> {
        let mut options = OpenOptions::new();
        options.append(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(path)
            .map_err(|e| JournalError::Io(path.to_path_buf(), e))?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            next_seq: 1,
        })
    }

    /// Open an existing journal to append after its last intact record.
    pub fn reopen(path: &Path) -> Result<(Journal, Vec<Event>), JournalError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| JournalError::Io(path.to_path_buf(), e))?;
        let (events, intact_len) = read(&text)?;
        // Drop a torn last line so that new records start on a line of their own.
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| JournalError::Io(path.to_path_buf(), e))?;
        file.set_len(intact_len as u64)
            .and_then(|()| file.sync_data())
            .map_err(|e| JournalError::Io(path.to_path_buf(), e))?;
        drop(file);
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| JournalError::Io(path.to_path_buf(), e))?;
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
                next_seq: events.len() as u64 + 1,
            },
            events,
        ))
    }

    /// Append one event and sync it to disk before returning.
    pub fn append(&mut self, event: Event) -> Result<(), JournalError> {
        let seq = self.next_seq;
        let record = Record {
            sum: checksum(seq, &event),
            seq,
            event,
        };
        let mut line = serde_json::to_string(&record).expect("records serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| JournalError::Io(self.path.clone(), e))?;
        self.next_seq += 1;
        Ok(())
    }
}

/// The events of a journal text and the length of its intact prefix. A torn last line (cut
/// short by a crash: it has no line end) is dropped; any other damaged line, the last complete
/// one included, is an error.
pub fn read(text: &str) -> Result<(Vec<Event>, usize), JournalError> {
    let mut events = Vec::new();
    let mut intact = 0;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (index, line) in lines.iter().enumerate() {
        let last = index + 1 == lines.len();
        let parsed = line
            .strip_suffix('\n')
            .ok_or("the line has no end")
            .and_then(|body| serde_json::from_str::<Record>(body).map_err(|_| "not a record"))
            .and_then(|record| {
                if record.seq != events.len() as u64 + 1 {
                    Err("out of sequence")
                } else if record.sum != checksum(record.seq, &record.event) {
                    Err("checksum mismatch")
                } else {
                    Ok(record)
                }
            });
        match parsed {
            Ok(record) => {
                events.push(record.event);
                intact += line.len();
            }
            Err(_) if last && !line.ends_with('\n') => break,
            Err(reason) => {
                return Err(JournalError::Corrupt {
                    line: index + 1,
                    reason: reason.to_string(),
                });
            }
        }
    }
    Ok((events, intact))
}

/// What replaying the journal says about one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    NotStarted,
    /// Started, and no side effect was announced.
    StartedNoEffect,
    /// An announced side effect may or may not have happened: observe before acting.
    InDoubt {
        effect: String,
    },
    Succeeded {
        outputs: BTreeMap<String, serde_json::Value>,
    },
    Failed {
        error: String,
    },
    /// Started, and an announced side effect (the last: `effect`) happened, but the step did
    /// not finish: killed, interrupted, or failed with `error` after it. A rollback observes and
    /// undoes it; a resume runs it again.
    Changed {
        effect: String,
        error: Option<String>,
    },
    Interrupted,
    Undone,
    /// An undo began and did not finish: observe before undoing again.
    UndoInDoubt,
}

/// The last outputs journaled for every step or item that succeeded; unlike [`replay`]'s
/// states, an undo that started later does not replace them (a rollback killed while revoking a
/// token still finds the token's accessor).
pub fn outputs(events: &[Event]) -> BTreeMap<String, BTreeMap<String, serde_json::Value>> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::StepSucceeded { step, outputs } => Some((step.clone(), outputs.clone())),
            _ => None,
        })
        .collect()
}

/// The state of every step that appears in the journal (others have not started).
pub fn replay(events: &[Event]) -> BTreeMap<String, StepState> {
    let mut states: BTreeMap<String, StepState> = BTreeMap::new();
    let mut open_effect: BTreeMap<String, String> = BTreeMap::new();
    for event in events {
        let Some(step) = event.step() else { continue };
        // The last effect of this step known to have happened, while it has not succeeded (an
        // attempt or a resume that starts again does not undo it).
        let changed = match states.get(step) {
            Some(StepState::Changed { effect, .. }) => Some(effect.clone()),
            _ => None,
        };
        let state = match event {
            Event::StepStarted { .. } => match changed {
                Some(effect) => StepState::Changed {
                    effect,
                    error: None,
                },
                None => StepState::StartedNoEffect,
            },
            Event::Intent { effect, .. } => {
                open_effect.insert(step.to_string(), effect.clone());
                StepState::InDoubt {
                    effect: effect.clone(),
                }
            }
            Event::Done { .. } => match open_effect.remove(step) {
                Some(effect) => StepState::Changed {
                    effect,
                    error: None,
                },
                None => StepState::StartedNoEffect,
            },
            Event::StepSucceeded { outputs, .. } => StepState::Succeeded {
                outputs: outputs.clone(),
            },
            Event::StepFailed { error, .. } => match (open_effect.get(step), changed) {
                (Some(effect), _) => StepState::InDoubt {
                    effect: effect.clone(),
                },
                (None, Some(effect)) => StepState::Changed {
                    effect,
                    error: Some(error.clone()),
                },
                (None, None) => StepState::Failed {
                    error: error.clone(),
                },
            },
            Event::StepInterrupted { .. } => match changed {
                Some(effect) => StepState::Changed {
                    effect,
                    error: None,
                },
                None => StepState::Interrupted,
            },
            Event::UndoStarted { .. } => StepState::UndoInDoubt,
            Event::UndoFinished { .. } => StepState::Undone,
            Event::RunStarted { .. } | Event::RunFinished { .. } => continue,
        };
        states.insert(step.to_string(), state);
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Event> {
        vec![
            Event::RunStarted {
                plan: "p".into(),
                plan_sha256: "00".into(),
            },
            Event::StepStarted {
                step: "backup".into(),
                attempt: 1,
            },
            Event::StepSucceeded {
                step: "backup".into(),
                outputs: BTreeMap::from([("backup".into(), "backups/x.yaml".into())]),
            },
            Event::StepStarted {
                step: "delete".into(),
                attempt: 1,
            },
            Event::Intent {
                step: "delete".into(),
                effect: "delete Ingress vault/vault on old".into(),
            },
            Event::Done {
                step: "delete".into(),
                effect: "delete Ingress vault/vault on old".into(),
            },
            Event::StepSucceeded {
                step: "delete".into(),
                outputs: BTreeMap::new(),
            },
        ]
    }

    fn write(events: &[Event]) -> String {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("planx-journal-{}-{unique}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut journal = Journal::create(&path).unwrap();
        for event in events {
            journal.append(event.clone()).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        text
    }

    #[test]
    fn round_trip() {
        let text = write(&sample());
        let (events, intact) = read(&text).unwrap();
        assert_eq!(events, sample());
        assert_eq!(intact, text.len());
    }

    /// A journal cut off at any byte replays to a consistent prefix of the run.
    #[test]
    fn every_cut_replays_to_a_prefix() {
        let text = write(&sample());
        let mut previous = 0;
        for cut in 0..=text.len() {
            let (events, _) = read(&text[..cut]).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            assert!(events.len() >= previous, "cut {cut} lost events");
            assert_eq!(events, sample()[..events.len()]);
            previous = events.len();
        }
        // Cut inside the delete: the side effect is in doubt until `done` is on disk.
        let cut_after_intent: usize = text.split_inclusive('\n').take(5).map(str::len).sum();
        let (events, _) = read(&text[..cut_after_intent]).unwrap();
        assert_eq!(
            replay(&events)["delete"],
            StepState::InDoubt {
                effect: "delete Ingress vault/vault on old".into()
            }
        );
    }

    #[test]
    fn reopening_drops_a_torn_line_and_appends_after_the_intact_ones() {
        let dir = std::env::temp_dir().join(format!("planx-reopen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut journal = Journal::create(&path).unwrap();
        for event in sample() {
            journal.append(event).unwrap();
        }
        drop(journal);
        assert!(
            Journal::create(&path).is_err(),
            "an existing journal is never overwritten"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 10]).unwrap();
        let (mut journal, events) = Journal::reopen(&path).unwrap();
        assert_eq!(events, sample()[..sample().len() - 1]);
        journal
            .append(Event::RunFinished {
                outcome: "interrupted".into(),
            })
            .unwrap();
        let (events, _) = read(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(events.len(), sample().len());
        assert_eq!(
            events.last(),
            Some(&Event::RunFinished {
                outcome: "interrupted".into()
            })
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_damaged_complete_last_line_is_refused_not_dropped() {
        let text = write(&sample());
        let last = text[..text.len() - 1].rfind('\n').unwrap() + 1;
        let damaged = format!(
            "{}{}",
            &text[..last],
            text[last..].replacen("\"seq\"", "\"seq \"", 1)
        );
        assert!(matches!(read(&damaged), Err(JournalError::Corrupt { .. })));
    }

    #[test]
    fn damage_before_the_last_line_is_refused() {
        let text = write(&sample());
        let damaged = text.replacen("backup", "bakcup", 1);
        let error = read(&damaged).unwrap_err();
        assert!(error.to_string().contains("damaged at line 2"), "{error}");
    }

    #[test]
    fn a_failure_after_an_intent_stays_in_doubt() {
        let mut events = sample()[..5].to_vec();
        events.push(Event::StepFailed {
            step: "delete".into(),
            error: "connection reset".into(),
        });
        assert!(matches!(
            replay(&events)["delete"],
            StepState::InDoubt { .. }
        ));
        assert!(matches!(
            replay(&events)["backup"],
            StepState::Succeeded { .. }
        ));
    }
}
