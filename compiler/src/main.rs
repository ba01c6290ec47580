//! The `planc` command: arguments in, one library call, rendered output and an exit code out
//! (0 clean or warnings only, 1 errors in the plan, 2 usage or unreadable input).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use planc::graph::GraphFormat;
use planc::report::{self, ReportFormat};
use planc::{Compilation, CompileRequest, FileLoader, catalog, diff_view, preview, render, state};
use planc_schema::ActionKind;

const EXAMPLES: &str = "\
Examples:
  planc check plans/vault-aks-migration.yaml --params plans/vault-aks-migration.params.yaml
  planc check plan.yaml --params prod.yaml --set old_context=aks-prod --format github
  planc graph plans/vault-transit-migration.yaml --params plans/vault-transit-migration.params.yaml
  planc graph plan.yaml --params p.yaml --format mermaid > graph.mmd
  planc render plan.yaml --params p.yaml -o compiled.json
  planc diff plans/vault-aks-migration.yaml --params p.yaml --state captured/ --format markdown
  planc render plan.yaml --params p.yaml --state captured/ -o saved-plan.json
  planc actions vault.seal-migrate
  planc completions bash > /etc/bash_completion.d/planc";

/// Check a plan for a stateful infrastructure move and compile it into an execution graph.
///
/// A plan is YAML: typed parameters, targets (Kubernetes clusters, Vaults, key services) and
/// steps that each use one action of a closed catalog. planc reads only the files it is given
/// and never touches a cluster; `planx` applies what planc compiled.
#[derive(Parser)]
#[command(name = "planc", version, after_help = EXAMPLES, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Show at most this many diagnostics to people (sorted by position), then "and N more" and
    /// the count per code; 0 shows every one. `--format json` and `github` always carry all.
    #[arg(long, global = true, value_name = "N", default_value_t = report::DEFAULT_SHOWN)]
    max_diagnostics: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Report every problem in a plan at once, with file:line:col. Exit 0 when clean or only
    /// warnings, 1 on errors, 2 when a file cannot be read.
    Check {
        #[command(flatten)]
        input: PlanInput,
        /// `human` for people, `json` for tools, `github` for pull-request annotations.
        #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
        format: CheckFormat,
    },
    /// Print the execution graph: levels, order and dependencies (transitively reduced).
    Graph {
        #[command(flatten)]
        input: PlanInput,
        /// `text` is stable line by line, made for review diffs.
        #[arg(long, value_enum, default_value_t = GraphOutput::Text)]
        format: GraphOutput,
    },
    /// Print the compiled plan as JSON: parameters (secrets as references only), targets, steps
    /// with resolved inputs, and the graph. With `--state`, write the saved plan instead: the
    /// compiled plan, the preview of every step and what was observed of every object, for
    /// planx to apply exactly and to refuse when the world has moved.
    Render {
        #[command(flatten)]
        input: PlanInput,
        /// A captured state (see `planc diff --help`): makes the output a saved plan.
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Write to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Show what every step will change, as diffs, given the starting state of the objects.
    ///
    /// DIR holds one folder per kubernetes target, named by the target's id, with the objects
    /// as `kubectl get -o yaml` prints them (one or many documents per file, a List too):
    /// `kubectl --context aks-old -n vault get cm,sts,ing,svc -o yaml > DIR/old/objects.yaml`.
    /// Secrets are redacted in every format.
    Diff {
        #[command(flatten)]
        input: PlanInput,
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// `markdown` is made for pull-request comments.
        #[arg(long, value_enum, default_value_t = DiffOutput::Text)]
        format: DiffOutput,
        /// For `markdown`: write one file per comment (`comment-1.md`, ...) into this folder.
        #[arg(long, value_name = "DIR")]
        comments_dir: Option<PathBuf>,
    },
    /// List the action catalog, or show one action: target kind, side effect, undo, inputs, outputs.
    Actions {
        /// An action name such as `vault.step-down`.
        name: Option<String>,
    },
    /// Print the JSON Schema of plan files (the one committed as schema/plan.schema.json).
    Schema,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages, planc.1 and one per subcommand, into DIR (book/man/ holds them).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Args)]
struct PlanInput {
    /// The plan file.
    plan: PathBuf,
    /// A YAML file of parameter values; repeat to layer files (later ones win).
    #[arg(long = "params", value_name = "FILE")]
    params: Vec<PathBuf>,
    /// Set one parameter, overriding the files: `--set name=value`. Lists and maps take YAML
    /// flow syntax: `--set zones=[a,b]`. Secrets take references only: `--set token=env:TOKEN`.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CheckFormat {
    Human,
    Json,
    Github,
}

#[derive(Clone, Copy, ValueEnum)]
enum DiffOutput {
    Text,
    Markdown,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphOutput {
    Text,
    Dot,
    Mermaid,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let max_diagnostics = cli.max_diagnostics;
    match cli.command {
        Command::Check { input, format } => {
            let format = match format {
                CheckFormat::Human => ReportFormat::Human,
                CheckFormat::Json => ReportFormat::Json,
                CheckFormat::Github => ReportFormat::Github,
            };
            let Some(compilation) = compile(&input) else {
                return ExitCode::from(2);
            };
            let options = report_options(std::io::stdout().is_terminal(), max_diagnostics);
            emit(&report::render(
                &compilation.diagnostics,
                &compilation.sources,
                format,
                &options,
            ));
            exit_code(&compilation)
        }
        Command::Graph { input, format } => {
            let format = match format {
                GraphOutput::Text => GraphFormat::Text,
                GraphOutput::Dot => GraphFormat::Dot,
                GraphOutput::Mermaid => GraphFormat::Mermaid,
                GraphOutput::Json => GraphFormat::Json,
            };
            with_plan(
                &input,
                max_diagnostics,
                |plan, _| Ok(plan.graph.render(&plan.name, format)),
                None,
            )
        }
        Command::Render {
            input,
            state: None,
            output,
        } => with_plan(
            &input,
            max_diagnostics,
            |plan, sources| {
                let mut text =
                    serde_json::to_string_pretty(&render::compiled_plan_json(plan, sources))
                        .expect("compiled plan serialises");
                text.push('\n');
                Ok(text)
            },
            output,
        ),
        Command::Render {
            input,
            state: Some(state),
            output,
        } => with_previews(
            &input,
            max_diagnostics,
            &state,
            output,
            |plan, sources, previews| {
                let saved = render::saved_plan(&request(&input), plan, sources, previews);
                let mut text = serde_json::to_string_pretty(&saved).expect("saved plan serialises");
                text.push('\n');
                Ok(text)
            },
        ),
        Command::Diff {
            input,
            state,
            format,
            comments_dir,
        } => {
            let colour = use_colour(std::io::stdout().is_terminal());
            with_previews(
                &input,
                max_diagnostics,
                &state,
                None,
                |plan, _, previews| match format {
                    DiffOutput::Text => Ok(diff_view::text(plan, &previews.steps, colour)),
                    DiffOutput::Json => Ok(diff_view::json(plan, &previews.steps)),
                    DiffOutput::Markdown => {
                        let parts = diff_view::markdown(plan, &previews.steps);
                        if let Some(dir) = &comments_dir {
                            std::fs::create_dir_all(dir)
                                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                            for (index, part) in parts.iter().enumerate() {
                                let path = dir.join(format!("comment-{}.md", index + 1));
                                std::fs::write(&path, part)
                                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                            }
                        }
                        Ok(parts.join("\n"))
                    }
                },
            )
        }
        Command::Actions { name } => actions(name.as_deref()),
        Command::Schema => {
            emit(&planc_schema::plan_schema_json());
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut without_hidden_subcommands(Cli::command()),
                "planc",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            match std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!(
                        "error: cannot write the man pages into {}: {error}",
                        dir.display()
                    );
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn request(input: &PlanInput) -> CompileRequest {
    CompileRequest {
        plan: input.plan.clone(),
        params_files: input.params.clone(),
        set: input.set.clone(),
    }
}

fn compile(input: &PlanInput) -> Option<Compilation> {
    match planc::compile(&request(input), &FileLoader) {
        Ok(compilation) => Some(compilation),
        Err(error) => {
            eprintln!("error: {error}");
            None
        }
    }
}

/// Compile, print diagnostics to stderr, and on success write what `produce` makes.
fn with_plan(
    input: &PlanInput,
    max_diagnostics: usize,
    produce: impl FnOnce(&planc::CompiledPlan, &planc::SourceMap) -> Result<String, String>,
    output: Option<PathBuf>,
) -> ExitCode {
    let Some(compilation) = compile(input) else {
        return ExitCode::from(2);
    };
    if !compilation.diagnostics.is_empty() {
        eprint!(
            "{}",
            report::render(
                &compilation.diagnostics,
                &compilation.sources,
                ReportFormat::Human,
                &report_options(std::io::stderr().is_terminal(), max_diagnostics),
            )
        );
    }
    let Some(plan) = &compilation.plan else {
        return ExitCode::from(1);
    };
    let text = match produce(plan, &compilation.sources) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
    };
    write_output(&text, output)
}

/// Compile, read the state, compute the previews, report every diagnostic on stderr, and on
/// success write what `produce` makes.
fn with_previews(
    input: &PlanInput,
    max_diagnostics: usize,
    state_dir: &std::path::Path,
    output: Option<PathBuf>,
    produce: impl FnOnce(
        &planc::CompiledPlan,
        &planc::SourceMap,
        &preview::Previews,
    ) -> Result<String, String>,
) -> ExitCode {
    let Some(mut compilation) = compile(input) else {
        return ExitCode::from(2);
    };
    let files = match state::read_folder(state_dir) {
        Ok(files) => files,
        Err(error) => {
            eprintln!(
                "error: cannot read the state folder {}: {error}",
                state_dir.display()
            );
            return ExitCode::from(2);
        }
    };
    let mut diagnostics = planc::Diagnostics::default();
    let previews = compilation.plan.as_ref().map(|plan| {
        let state = state::read_state(files, plan, &mut compilation.sources, &mut diagnostics);
        preview::preview(plan, &state, &mut diagnostics)
    });
    let mut all = compilation.diagnostics.clone();
    all.extend(diagnostics.into_sorted());
    if !all.is_empty() {
        eprint!(
            "{}",
            report::render(
                &all,
                &compilation.sources,
                ReportFormat::Human,
                &report_options(std::io::stderr().is_terminal(), max_diagnostics),
            )
        );
    }
    let (Some(plan), Some(previews)) = (&compilation.plan, previews) else {
        return ExitCode::from(1);
    };
    if all.iter().any(|d| d.severity == planc::Severity::Error) {
        return ExitCode::from(1);
    }
    let text = match produce(plan, &compilation.sources, &previews) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    write_output(&text, output)
}

fn write_output(text: &str, output: Option<PathBuf>) -> ExitCode {
    match output {
        None => emit(text),
        Some(path) => {
            if let Err(error) = std::fs::write(&path, text) {
                eprintln!("error: cannot write {}: {error}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}

fn exit_code(compilation: &Compilation) -> ExitCode {
    if compilation.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Colour on a terminal unless `NO_COLOR` is set; `max_diagnostics` 0 means every one.
fn report_options(terminal: bool, max_diagnostics: usize) -> report::Options {
    report::Options {
        colour: use_colour(terminal),
        shown: (max_diagnostics > 0).then_some(max_diagnostics),
    }
}

fn use_colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn actions(name: Option<&str>) -> ExitCode {
    let mut out = String::new();
    let Some(name) = name else {
        for &action in ActionKind::ALL {
            let spec = catalog::spec(action);
            out.push_str(&format!(
                "{:<28} {:<12} {:<13} {}\n",
                action.name(),
                spec.target.name(),
                spec.side_effect.as_str(),
                spec.summary
            ));
        }
        emit(&out);
        return ExitCode::SUCCESS;
    };
    let Some(action) = ActionKind::from_name(name) else {
        eprintln!("error: unknown action `{name}`; `planc actions` lists them");
        return ExitCode::from(2);
    };
    let spec = catalog::spec(action);
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let input = action.input_schema(&mut generator).to_value();
    let definitions = generator.take_definitions(true);
    let input = definitions
        .get(action.input_type_name())
        .cloned()
        .unwrap_or(input);
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join("; ")
        }
    };
    out.push_str(&format!("{}: {}\n", action.name(), spec.summary));
    out.push_str(&format!("  runs on:       {}\n", spec.target.describe()));
    out.push_str(&format!("  side effect:   {}\n", spec.side_effect.as_str()));
    out.push_str(&format!("  undo:          {}\n", spec.undo.describe()));
    out.push_str(&format!("  chapter:       {}\n", spec.chapter));
    out.push_str(&format!(
        "  secret inputs: {}\n",
        list(spec.secret_inputs.iter().map(|s| s.to_string()).collect())
    ));
    out.push_str(&format!(
        "  outputs:       {}\n",
        list(
            spec.outputs
                .iter()
                .map(|o| format!("{} ({})", o.name, o.description))
                .collect()
        )
    ));
    if action == ActionKind::TokenCreate {
        out.push_str("  policy of the token:\n");
        for line in catalog::MIGRATION_POLICY.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out.push_str("  inputs (JSON Schema):\n");
    let text = serde_json::to_string_pretty(&input).unwrap_or_default();
    for line in text.lines() {
        out.push_str(&format!("    {line}\n"));
    }
    emit(&out);
    ExitCode::SUCCESS
}

/// Write to stdout; a reader that went away (`planc graph | head`) is not an error.
fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// `command` without its hidden subcommands (`man`), which clap_complete would otherwise offer.
fn without_hidden_subcommands(command: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|subcommand| !subcommand.is_hide_set())
        .cloned()
        .collect();
    let trimmed = clap::Command::new("planc")
        .args(command.get_arguments().cloned())
        .subcommands(visible);
    match command.get_version() {
        Some(_) => trimmed.version(env!("CARGO_PKG_VERSION")),
        None => trimmed,
    }
}
