//! The run directory: every file name in it, and the run record (`run.json`) that holds what
//! `status`, `resume` and `rollback` need without the plan, module and parameter files: the
//! compiled plan, its digest, the secret references (never values), the kubeconfig and contexts.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use planc::CompiledPlan;
use planc::expr::Resolved;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::PlanxError;

/// The format of `run.json` and its run directory; bump the version on any incompatible change
/// (v3: every file planx reads back has its checksum beside it).
pub const RUN_FORMAT: &str = "planx.run/v4";

/// What a run was started with, written once to `RUN/run.json`; its JSON Schema is
/// `schema/run.schema.json`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    pub format: String,
    pub run_id: String,
    /// The folder planx was started in: relative `file:` secret references resolve against it.
    pub started_in: PathBuf,
    /// The files as they were named at the start (for people, and for `resume --plan` to
    /// compare with); the run never reads them again.
    pub request: StoredRequest,
    /// Every file the compilation read, in order: positions in the stored plan refer to them.
    pub sources: Vec<PathBuf>,
    /// SHA-256 of the compiled plan's rendering (source positions left out).
    pub plan_sha256: String,
    /// Secret parameters by reference (`env:NAME`, `file:PATH`, `prompt`); never a value.
    pub secret_references: BTreeMap<String, String>,
    /// Absolute path of the kubeconfig, and the context of every kubernetes target.
    pub kubeconfig: PathBuf,
    pub contexts: BTreeMap<String, String>,
    /// `host=ip:port` pins, as given with `--resolve`.
    pub resolve: Vec<String>,
    /// The saved plan applied, when the run was started from one; its copy is kept in the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_plan: Option<PathBuf>,
    /// The compiled plan itself: the run continues from this, not from the files.
    pub compiled: CompiledPlan,
}

/// The plan, parameter files and `--set` arguments a run was compiled from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoredRequest {
    pub plan: PathBuf,
    pub params_files: Vec<PathBuf>,
    pub set: Vec<String>,
}

impl RunRecord {
    /// The record of a new run of `plan`, compiled from `sources`.
    pub fn new(
        run_id: String,
        request: &planc::CompileRequest,
        plan: CompiledPlan,
        sources: &planc::SourceMap,
        kubeconfig: &Path,
        resolve: Vec<String>,
        saved_plan: Option<PathBuf>,
    ) -> Result<RunRecord, PlanxError> {
        let started_in = std::env::current_dir()
            .map_err(|e| PlanxError::input(format!("cannot read the current folder: {e}")))?;
        let kubeconfig = if kubeconfig.is_absolute() {
            kubeconfig.to_path_buf()
        } else {
            started_in.join(kubeconfig)
        };
        let mut secret_references = BTreeMap::new();
        let target_values = plan.targets.values().flat_map(|t| t.attributes.values());
        for value in plan.params.iter().map(|p| &p.value).chain(target_values) {
            if let Resolved::Secret { param, reference } = value {
                secret_references.insert(param.clone(), reference.clone());
            }
        }
        let contexts = plan
            .targets
            .values()
            .filter_map(|t| t.kubernetes())
            .map(|t| (t.id.to_string(), t.context.to_string()))
            .collect();
        Ok(RunRecord {
            format: RUN_FORMAT.to_string(),
            run_id,
            started_in,
            request: StoredRequest {
                plan: request.plan.clone(),
                params_files: request.params_files.clone(),
                set: request.set.clone(),
            },
            sources: sources.paths().map(Path::to_path_buf).collect(),
            plan_sha256: digest(&plan, sources),
            secret_references,
            kubeconfig,
            contexts,
            resolve,
            saved_plan,
            compiled: plan,
        })
    }

    /// The source map the stored plan's positions refer to (paths only).
    pub fn source_map(&self) -> planc::SourceMap {
        let mut sources = planc::SourceMap::default();
        for path in &self.sources {
            sources.add(path.clone(), String::new());
        }
        sources
    }
}

/// The JSON Schema of `run.json` (`planx.run/v4`).
pub fn run_schema_json() -> String {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<RunRecord>();
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serialises");
    text.push('\n');
    text
}

/// SHA-256 of a compiled plan's rendering, source positions left out.
pub fn digest(plan: &CompiledPlan, sources: &planc::SourceMap) -> String {
    planc::render::compiled_digest(&planc::render::compiled_plan_json(plan, sources))
}

/// A run directory (0700) and the names of everything in it.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Create the directory of a new run under `runs` and write its record; refuses an existing
    /// one. The path is made absolute, so that the file paths steps journal (backups, snapshots)
    /// stay valid when the run is continued from another folder.
    pub fn create(runs: &Path, record: &RunRecord) -> Result<RunDir, PlanxError> {
        let runs = record.started_in.join(runs);
        let runs = runs.as_path();
        let path = runs.join(&record.run_id);
        let cannot =
            |e: std::io::Error| PlanxError::input(format!("cannot create {}: {e}", path.display()));
        create_private_dir(runs).map_err(cannot)?;
        std::fs::create_dir(&path).map_err(cannot)?;
        set_private(&path).map_err(cannot)?;
        let run = RunDir { path };
        let mut text = serde_json::to_string_pretty(record)
            .map_err(|e| PlanxError::failed(format!("cannot write the run record: {e}")))?;
        text.push('\n');
        write_private(&run.record_path(), text.as_bytes())?;
        Ok(run)
    }

    /// An existing run directory and its record, checked: the format, and the stored plan
    /// against its digest.
    pub fn open(path: &Path) -> Result<(RunDir, RunRecord), PlanxError> {
        let run = RunDir {
            path: path.to_path_buf(),
        };
        let record_path = run.record_path();
        if let Err(e) = std::fs::metadata(&record_path) {
            return Err(PlanxError::input(format!(
                "{} is not a run directory ({}: {e}); give the folder `planx apply` printed as `run directory:`",
                path.display(),
                record_path.display()
            )));
        }
        // The format first, from the text as it is: a run of an older planx has no checksum
        // beside its record, and deserves that answer rather than "damaged".
        let unchecked: Option<Value> = std::fs::read_to_string(&record_path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let format = unchecked
            .as_ref()
            .and_then(|head| head.get("format"))
            .and_then(Value::as_str)
            .unwrap_or(RUN_FORMAT);
        if format != RUN_FORMAT {
            return Err(PlanxError::input(format!(
                "{} is {}; this planx reads `{RUN_FORMAT}`: continue the run with the planx that started it",
                record_path.display(),
                if format.is_empty() {
                    "from an older planx".to_string()
                } else {
                    format!("`{format}`")
                }
            )));
        }
        let text = read_checked(&record_path).map_err(PlanxError::input)?;
        let head: Value = serde_json::from_str(&text)
            .map_err(|e| PlanxError::input(format!("{} is damaged: {e}", record_path.display())))?;
        let record: RunRecord = serde_json::from_value(head)
            .map_err(|e| PlanxError::input(format!("{} is damaged: {e}", record_path.display())))?;
        let stored = digest(&record.compiled, &record.source_map());
        if stored != record.plan_sha256 {
            return Err(PlanxError::input(format!(
                "{} is damaged: its plan has SHA-256 {stored}, recorded {}",
                record_path.display(),
                record.plan_sha256
            )));
        }
        Ok((run, record))
    }

    /// The run directory at `path`, for a run driven through the library (the engine's tests
    /// and benches make their own).
    pub fn at(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn record_path(&self) -> PathBuf {
        self.path.join("run.json")
    }

    pub fn journal_path(&self) -> PathBuf {
        self.path.join("journal.jsonl")
    }

    /// The saved plan the run applies, kept as it was checked.
    pub fn saved_plan_path(&self) -> PathBuf {
        self.path.join("saved-plan.json")
    }

    /// The folder of the object records made before a step (or item) changed them.
    pub fn before_folder(&self, key: &str) -> PathBuf {
        self.path.join("before").join(file_safe(key))
    }

    /// Where an object is recorded before the step (or item) `key` changes it. The name only
    /// keeps records apart; the identity is read from inside the record.
    pub fn object_record_path(&self, key: &str, target: &str, kind: &str, name: &str) -> PathBuf {
        self.before_folder(key)
            .join(file_safe(&format!("{target}--{kind}--{name}.json")))
    }

    /// Where a `k8s.backup` step writes an object (the restore plan takes these paths; nothing
    /// reads the name back).
    pub fn backup_path(&self, target: &str, kind: &str, name: &str) -> PathBuf {
        self.path
            .join("backups")
            .join(file_safe(&format!("{target}-{kind}-{name}.json")))
    }

    /// Where a `vault.snapshot-save` step (or item) `key` writes its snapshot of `vault`.
    pub fn snapshot_path(&self, vault: &str, key: &str) -> PathBuf {
        self.path
            .join("snapshots")
            .join(file_safe(&format!("{vault}-{key}.snap")))
    }

    /// Keep the saved plan a run applies.
    pub fn keep_saved_plan(
        &self,
        saved: &planc_schema::saved::SavedPlan,
    ) -> Result<(), PlanxError> {
        let text = serde_json::to_vec_pretty(saved)
            .map_err(|e| PlanxError::failed(format!("cannot write the saved plan: {e}")))?;
        write_private(&self.saved_plan_path(), &text)
    }
}

/// An object as it was before a step changed it, with its identity inside the record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRecord {
    /// The kubernetes target (cluster) the object lives in.
    pub target: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The object as it was (cleaned for a backup), `null` when it did not exist.
    pub object: Value,
}

/// A name made of letters, digits, `-`, `.` and `_` only (others become `_`).
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Create `path` (and its parents) as a directory only its owner may enter.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    set_private(path)
}

fn set_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Write a new file only its owner may read, with its checksum beside it; refuses an existing
/// one.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PlanxError> {
    if path.exists() {
        return Err(PlanxError::input(format!(
            "cannot write {}: it exists already",
            path.display()
        )));
    }
    write_checked(path, bytes).map_err(PlanxError::input)
}

/// The file beside `path` that holds its SHA-256: `NAME.sha256`.
pub fn checksum_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Whether `path` is a file of its own, not the checksum or the half-written copy that
/// [`write_checked`] leaves beside one.
pub fn is_record(path: &Path) -> bool {
    !path
        .extension()
        .is_some_and(|e| e == "sha256" || e == "partial")
}

/// Write a file planx reads back later (the run record, an object record, a backup, the saved
/// plan), readable by its owner only, with its SHA-256 in `NAME.sha256` beside it as
/// `sha256sum` writes it. The checksum goes first and the file is moved into place last, so a
/// file that exists always has its checksum, and a crash leaves the old file or the new one.
pub fn write_checked(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let line = format!("{}  {name}\n", planc::hex::encode(&Sha256::digest(bytes)));
    let mut staged = path.as_os_str().to_owned();
    staged.push(".partial");
    let staged = PathBuf::from(staged);
    write_synced(&checksum_path(path), line.as_bytes()).map_err(cannot)?;
    write_synced(&staged, bytes).map_err(cannot)?;
    std::fs::rename(&staged, path).map_err(cannot)
}

/// Read a file written by [`write_checked`], refusing it when it does not match its checksum:
/// planx never acts on a damaged record.
pub fn read_checked(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let sums = checksum_path(path);
    let recorded = std::fs::read_to_string(&sums).map_err(|e| {
        format!(
            "{} has no readable checksum beside it ({}: {e}): planx did not write it, or it was damaged; planx will not act on it (a file made by hand needs `sha256sum FILE > FILE.sha256`)",
            path.display(),
            sums.display()
        )
    })?;
    let recorded = recorded.split_whitespace().next().unwrap_or("");
    let actual = planc::hex::encode(&Sha256::digest(&bytes));
    if recorded != actual {
        return Err(format!(
            "{} is damaged: its SHA-256 is {actual}, {} says {recorded}; planx will not act on it: put the file back as it was, or finish by hand",
            path.display(),
            sums.display()
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
