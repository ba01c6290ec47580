//! planc, the plan compiler: reads a plan (and the modules and parameter files it names), checks
//! it, and compiles it into an execution graph. It does no IO beyond reading those files and never
//! talks to a cluster; every problem comes back as a [`Diagnostic`] value.
//!
//! The pipeline, one line each: [`yaml`] parses with positions, [`syntax`] checks the document's
//! shape, [`lower`] binds parameters, instantiates modules and resolves every step, [`graph`] orders
//! the steps, [`lints`] applies the Vault ordering rules; [`report`] and [`render`] print. What
//! each action means (its catalog line, the objects it changes, its preview, what it establishes
//! for the lints) lives with the action in [`actions`], found through [`catalog::action`].

pub mod actions;
pub mod catalog;
pub mod diagnostic;
pub mod diff;
pub mod diff_view;
pub mod drift;
pub mod edit;
pub mod expr;
pub mod flavour;
pub mod graph;
pub mod hex;
pub mod lints;
pub mod lower;
pub mod model;
pub mod params;
pub mod permissions;
pub mod preview;
pub mod render;
pub mod report;
pub mod source;
pub mod state;
pub mod suggest;
pub mod syntax;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use diagnostic::{Code, Diagnostic, Diagnostics, Severity};
pub use model::CompiledPlan;
pub use source::SourceMap;

/// Reads the files a compilation names: the plan, its modules, parameter files.
pub trait Loader {
    fn load(&self, path: &Path) -> std::io::Result<String>;
}

/// Files larger than this are not read at all. Smaller ones beyond the parser's own limit are
/// read and then refused with a diagnostic.
pub const MAX_READ_BYTES: u64 = 256 * 1024 * 1024;

/// Reads from the file system.
pub struct FileLoader;

impl Loader for FileLoader {
    fn load(&self, path: &Path) -> std::io::Result<String> {
        let size = std::fs::metadata(path)?.len();
        if size > MAX_READ_BYTES {
            return Err(std::io::Error::other(format!(
                "the file is {} MiB, larger than planc reads",
                size / (1024 * 1024)
            )));
        }
        let bytes = std::fs::read(path)?;
        String::from_utf8(bytes).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file is not UTF-8 text",
            )
        })
    }
}

/// What to compile.
#[derive(Debug, Clone, Default)]
pub struct CompileRequest {
    pub plan: PathBuf,
    /// `--params` files, later ones overriding earlier ones.
    pub params_files: Vec<PathBuf>,
    /// `--set name=value`, overriding the files.
    pub set: Vec<String>,
}

/// A file named on the command line could not be read.
#[derive(Debug)]
pub struct InputError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read {}: {}", self.path.display(), self.error)
    }
}

/// The result of a compilation: the sources read, every diagnostic (sorted), and the plan when
/// there were no errors.
pub struct Compilation {
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
    pub plan: Option<CompiledPlan>,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Compile a plan. Only the files named in the request can make this fail outright; everything
/// else is a diagnostic.
pub fn compile(request: &CompileRequest, loader: &dyn Loader) -> Result<Compilation, InputError> {
    let mut sources = SourceMap::default();
    let mut diagnostics = Diagnostics::default();
    let read = |path: &Path| {
        loader.load(path).map_err(|error| InputError {
            path: path.to_path_buf(),
            error,
        })
    };
    let plan_file = sources.add(request.plan.clone(), read(&request.plan)?);
    let mut supplied = Vec::new();
    for path in &request.params_files {
        let file = sources.add(path.clone(), read(path)?);
        match yaml::parse(file, &sources.get(file).text) {
            Ok(root) => supplied.extend(params::read_params_file(file, &root, &mut diagnostics)),
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    if !request.set.is_empty() {
        let file = sources.add("--set", request.set.join("\n"));
        let text = sources.get(file).text.clone();
        supplied.extend(params::read_set_arguments(file, &text, &mut diagnostics));
    }
    let plan = compile_plan(&mut sources, loader, plan_file, supplied, &mut diagnostics);
    let plan = plan.filter(|_| !diagnostics.has_errors());
    Ok(Compilation {
        sources,
        diagnostics: diagnostics.into_sorted(),
        plan,
    })
}

fn compile_plan(
    sources: &mut SourceMap,
    loader: &dyn Loader,
    plan_file: source::FileId,
    supplied: Vec<params::Supplied>,
    diagnostics: &mut Diagnostics,
) -> Option<CompiledPlan> {
    let text = sources.get(plan_file).text.clone();
    let root = match yaml::parse(plan_file, &text) {
        Ok(root) => root,
        Err(diagnostic) => {
            diagnostics.push(diagnostic);
            return None;
        }
    };
    drop(text);
    let document = syntax::read_document(plan_file, &root, diagnostics)?;
    drop(root);
    if document.kind == syntax::DocumentKind::Module {
        diagnostics.push(
            Diagnostic::new(
                Code::Module,
                document.kind_pos.span(plan_file),
                "this file is a module, not a plan",
            )
            .with_help("instantiate it from a plan with a step `module: PATH`"),
        );
        return None;
    }
    let lowered = lower::lower(sources, loader, Rc::new(document), supplied, diagnostics);
    let plan = match CompiledPlan::assemble(
        lowered.name,
        lowered.description,
        lowered.params,
        lowered.targets,
        lowered.steps,
        lowered.deps,
    ) {
        Ok(plan) => plan,
        Err(cycles) => {
            for cycle in cycles {
                let names: Vec<&str> = cycle.iter().map(|(id, _)| id.as_str()).collect();
                diagnostics.push(
                    Diagnostic::new(
                        Code::Cycle,
                        cycle[0].1,
                        format!("dependency cycle: {}", cycle_path(&names)),
                    )
                    .with_help("each arrow reads \"needs\"; remove one of these dependencies"),
                );
            }
            return None;
        }
    };
    lints::check(&plan.steps, &plan.targets, &plan.graph, diagnostics);
    Some(plan)
}

/// `a -> b -> c -> a`, with the middle of a long cycle elided so one diagnostic stays one line.
fn cycle_path(names: &[&str]) -> String {
    const HEAD: usize = 8;
    const TAIL: usize = 3;
    if names.len() <= HEAD + TAIL + 1 {
        return names.join(" -> ");
    }
    format!(
        "{} -> ... {} more steps ... -> {}",
        names[..HEAD].join(" -> "),
        names.len() - HEAD - TAIL,
        names[names.len() - TAIL..].join(" -> ")
    )
}
