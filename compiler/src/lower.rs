//! Lowering: documents and parameter values in, compiled steps out. Instantiates modules with
//! namespaced ids, resolves targets, expressions, dependencies and `for_each`, checks each step's
//! action, target kind and typed input, and reports everything it finds along the way.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use indexmap::IndexMap;
use planc_schema::ActionKind;
use planc_schema::actions::PathSegment;
use planc_schema::plan::{ParamType, TargetKind};

use crate::Loader;
use crate::catalog;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::expr::{self, Expression, Resolved, TemplateContext};
use crate::model::{CompiledParam, CompiledStep, CompiledTarget, Retry};
use crate::params::{self, Supplied};
use crate::source::{FileId, SourceMap, Span};
use crate::suggest::{self, Suggester};
use crate::syntax::{self, Document, DocumentKind, StepDecl, parse_duration};
use crate::yaml::{Node, Pos, Value};

/// How deep modules may include modules.
const MAX_MODULE_DEPTH: usize = 16;

/// What lowering produces: steps in declaration order and, for each, its direct dependencies.
pub struct Lowered {
    pub name: String,
    pub description: Option<String>,
    pub params: Vec<CompiledParam>,
    pub targets: IndexMap<String, CompiledTarget>,
    pub steps: Vec<CompiledStep>,
    pub deps: Vec<Vec<usize>>,
}

/// A parameter scope: the root plan, or one module instance.
struct Scope {
    /// Prepended to the ids of the steps in this scope: `""` or `"cutover."`.
    prefix: String,
    document: Rc<Document>,
    values: IndexMap<String, Resolved>,
    context: minijinja::Value,
    /// Module target parameters: parameter name to target id.
    target_bindings: HashMap<String, String>,
    /// Dependencies every step of this scope inherits from the instantiating step.
    inherited_needs: Vec<usize>,
    skipped: bool,
}

/// One step of the expanded plan, before resolution.
struct Instance {
    id: String,
    scope: usize,
    step: usize,
}

/// What an id in `needs:` or `steps.` names.
#[derive(Clone)]
enum Named {
    Step(usize),
    /// A module instance: all the steps it expanded to.
    Module(Vec<usize>),
}

struct Lowering<'a> {
    sources: &'a mut SourceMap,
    loader: &'a dyn Loader,
    diagnostics: &'a mut Diagnostics,
    documents: HashMap<PathBuf, Option<Rc<Document>>>,
    scopes: Vec<Scope>,
    instances: Vec<Instance>,
    ids: HashMap<String, Named>,
    targets: IndexMap<String, CompiledTarget>,
    /// (file, parameter) pairs read by some expression.
    used_params: HashSet<(FileId, String)>,
    /// (file, parameter) pairs declared; one without a value was reported when it was bound.
    declared_params: HashSet<(FileId, String)>,
    suggester: Suggester,
}

pub fn lower(
    sources: &mut SourceMap,
    loader: &dyn Loader,
    root: Rc<Document>,
    supplied: Vec<Supplied>,
    diagnostics: &mut Diagnostics,
) -> Lowered {
    let mut lowering = Lowering {
        sources,
        loader,
        diagnostics,
        documents: HashMap::new(),
        scopes: Vec::new(),
        instances: Vec::new(),
        ids: HashMap::new(),
        targets: IndexMap::new(),
        used_params: HashSet::new(),
        declared_params: HashSet::new(),
        suggester: Suggester::default(),
    };
    let root_file = root.file;
    lowering.declare_params(&root);
    let values = params::bind(
        &root.params,
        root_file,
        supplied,
        None,
        &mut lowering.suggester,
        lowering.diagnostics,
    );
    let compiled_params = root
        .params
        .iter()
        .filter_map(|p| {
            Some(CompiledParam {
                name: p.name.value.clone(),
                param_type: p.param_type,
                description: p.description.as_ref().map(|d| d.value.clone()),
                value: values.get(&p.name.value)?.clone(),
            })
        })
        .collect();
    lowering.resolve_targets(&root, &values);
    lowering.push_scope(
        String::new(),
        root.clone(),
        values,
        HashMap::new(),
        Vec::new(),
        false,
    );
    let mut stack = vec![lowering.sources.path(root_file).to_path_buf()];
    lowering.expand(0, &mut stack, 0);
    let (steps, deps) = lowering.resolve_steps();
    lowering.report_unused_params();
    Lowered {
        name: root
            .name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_default(),
        description: root.description.as_ref().map(|d| d.value.clone()),
        params: compiled_params,
        targets: lowering.targets,
        steps,
        deps,
    }
}

impl Lowering<'_> {
    fn error(&mut self, code: Code, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(code, span, message));
    }

    fn push_scope(
        &mut self,
        prefix: String,
        document: Rc<Document>,
        values: IndexMap<String, Resolved>,
        target_bindings: HashMap<String, String>,
        inherited_needs: Vec<usize>,
        skipped: bool,
    ) -> usize {
        let mut context = TemplateContext::default();
        for (name, value) in &values {
            if let Some(plain) = value.to_context() {
                context.params.insert(name.clone(), plain);
            }
        }
        if prefix.is_empty() {
            for (id, target) in &self.targets {
                context.targets.insert(id.clone(), target_json(target));
            }
        } else {
            for (name, id) in &target_bindings {
                if let Some(target) = self.targets.get(id) {
                    context.targets.insert(name.clone(), target_json(target));
                }
            }
        }
        self.scopes.push(Scope {
            prefix,
            document,
            values,
            context: context.to_value(),
            target_bindings,
            inherited_needs,
            skipped,
        });
        self.scopes.len() - 1
    }

    // ----------------------------------------------------------------------------- targets

    fn resolve_targets(&mut self, root: &Rc<Document>, values: &IndexMap<String, Resolved>) {
        let file = root.file;
        let mut context = TemplateContext::default();
        for (name, value) in values {
            if let Some(plain) = value.to_context() {
                context.params.insert(name.clone(), plain);
            }
        }
        let context = context.to_value();
        for declaration in &root.targets {
            let mut attributes = IndexMap::new();
            for (key, node) in &declaration.attributes {
                let value = self.resolve_target_attribute(file, node, values, &context);
                if let Some(value) = value {
                    attributes.insert(key.name.clone(), value);
                }
            }
            let span = declaration.id.pos.span(file);
            fill_target_defaults(declaration.kind, &mut attributes);
            self.check_target(
                declaration.kind,
                &declaration.id.value,
                &mut attributes,
                span,
                declaration,
            );
            self.targets.insert(
                declaration.id.value.clone(),
                CompiledTarget {
                    id: declaration.id.value.clone(),
                    kind: declaration.kind,
                    attributes,
                },
            );
        }
        // Cross-references: a vault lives in a kubernetes target.
        for declaration in &root.targets {
            if declaration.kind != TargetKind::Vault {
                continue;
            }
            let Some((key, node)) = declaration
                .attributes
                .iter()
                .find(|(k, _)| k.name == "cluster")
            else {
                continue;
            };
            let _ = key;
            let Some(cluster) = self.targets[&declaration.id.value]
                .attribute("cluster")
                .map(str::to_owned)
            else {
                continue;
            };
            match self.targets.get(&cluster).map(|t| t.kind) {
                Some(TargetKind::Kubernetes) => {}
                Some(other) => self.error(
                    Code::WrongTargetKind,
                    node.pos.span(file),
                    format!(
                        "`cluster` must name a kubernetes target, `{cluster}` is a {} target",
                        other.name()
                    ),
                ),
                None => {
                    let diagnostic = Diagnostic::new(
                        Code::UnknownReference,
                        node.pos.span(file),
                        format!("unknown target `{cluster}`"),
                    );
                    let near = self
                        .suggester
                        .closest(&cluster, self.targets.keys().map(String::as_str));
                    self.diagnostics.push(with_suggestion(diagnostic, near));
                }
            }
        }
    }

    fn resolve_target_attribute(
        &mut self,
        file: FileId,
        node: &Node,
        values: &IndexMap<String, Resolved>,
        context: &minijinja::Value,
    ) -> Option<Resolved> {
        let text = match &node.value {
            Value::Str(text) => text,
            Value::Int(i) => return Some(Resolved::Int(*i)),
            Value::Bool(b) => return Some(Resolved::Bool(*b)),
            other => {
                self.error(
                    Code::WrongType,
                    node.pos.span(file),
                    format!(
                        "a target attribute must be a scalar, found {}",
                        other.describe()
                    ),
                );
                return None;
            }
        };
        if !expr::is_template(text) {
            self.check_literal(text, node.pos.span(file));
            return Some(Resolved::Str(text.clone()));
        }
        let span = node.pos.span(file);
        match expr::classify(text) {
            Ok(Expression::Param { name }) => {
                self.used_params.insert((file, name.clone()));
                match values.get(&name) {
                    Some(value) => Some(value.clone()),
                    None => {
                        self.unknown_param(&name, span, values);
                        None
                    }
                }
            }
            Ok(Expression::Template { references }) => {
                for reference in &references {
                    if let Some(name) = reference.strip_prefix("params.") {
                        let name = name.split('.').next().unwrap_or(name);
                        self.used_params.insert((file, name.to_string()));
                    }
                }
                for reference in &references {
                    let mut parts = reference.split('.');
                    match parts.next() {
                        Some("params") => {
                            let name = parts.next().unwrap_or("");
                            self.used_params.insert((file, name.to_string()));
                            match values.get(name) {
                                Some(Resolved::Secret { .. }) => {
                                    self.secret_interpolated(name, span);
                                    return None;
                                }
                                Some(_) => {}
                                None => {
                                    self.unknown_param(name, span, values);
                                    return None;
                                }
                            }
                        }
                        _ => {
                            self.diagnostics.push(
                                Diagnostic::new(
                                    Code::UnknownReference,
                                    span,
                                    format!("`{reference}` is not available in a target"),
                                )
                                .with_help("target attributes can read `params` only"),
                            );
                            return None;
                        }
                    }
                }
                self.render(text, context, span).map(Resolved::Str)
            }
            Ok(_) => {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::UnknownReference,
                        span,
                        "target attributes are known before any step runs",
                    )
                    .with_help("target attributes can read `params` only"),
                );
                None
            }
            Err(message) => {
                self.error(Code::Expression, span, message);
                None
            }
        }
    }

    fn check_target(
        &mut self,
        kind: TargetKind,
        id: &str,
        attributes: &mut IndexMap<String, Resolved>,
        span: Span,
        declaration: &syntax::TargetDecl,
    ) {
        let file = span.file;
        let attribute_span = |name: &str| {
            declaration
                .attributes
                .iter()
                .find(|(k, _)| k.name == name)
                .map(|(_, n)| n.pos.span(file))
                .unwrap_or(span)
        };
        for (name, value) in attributes.iter() {
            let is_secret = kind == TargetKind::Transit && name == "token";
            match (is_secret, value) {
                (true, Resolved::Secret { .. }) => {}
                (true, _) => self.diagnostics.push(
                    Diagnostic::new(
                        Code::SecretLiteral,
                        attribute_span(name),
                        format!("`token` of transit target `{id}` must be a secret parameter"),
                    )
                    .with_help("declare a parameter with `type: secret` and write `token: \"{{ params.NAME }}\"`"),
                ),
                (false, Resolved::Secret { param, .. }) => {
                    self.secret_interpolated(&param.clone(), attribute_span(name))
                }
                (false, Resolved::Int(_)) if INTEGER_ATTRIBUTES.contains(&name.as_str()) => {}
                (false, Resolved::Str(_)) if !INTEGER_ATTRIBUTES.contains(&name.as_str()) => {}
                (false, other) => {
                    let found = other.to_json().to_string();
                    self.error(
                        Code::WrongType,
                        attribute_span(name),
                        format!(
                            "`{name}` of target `{id}` must be {}, found {found}",
                            if INTEGER_ATTRIBUTES.contains(&name.as_str()) {
                                "an integer"
                            } else {
                                "a string"
                            }
                        ),
                    )
                }
            }
        }
        if kind == TargetKind::Vault {
            let flavour = attributes
                .get("flavour")
                .and_then(Resolved::as_str)
                .unwrap_or("");
            if crate::flavour::Flavour::parse(flavour).is_none() {
                let known: Vec<&str> = crate::flavour::Flavour::ALL
                    .iter()
                    .map(|f| f.name())
                    .collect();
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        attribute_span("flavour"),
                        format!(
                            "`flavour` must be {}, found `{flavour}`",
                            known
                                .iter()
                                .map(|name| format!("`{name}`"))
                                .collect::<Vec<_>>()
                                .join(" or ")
                        ),
                    )
                    .with_help("for another install, keep a flavour and set each object's name (`statefulset`, `configmap`, `active_service`, ...) on the target"),
                );
            }
            let reach = attributes
                .get("reach")
                .and_then(Resolved::as_str)
                .unwrap_or("");
            if !matches!(reach, "port-forward" | "address") {
                self.diagnostics.push(Diagnostic::new(
                    Code::InvalidValue,
                    attribute_span("reach"),
                    format!("`reach` must be `port-forward` or `address`, found `{reach}`"),
                ));
            }
            if reach == "address" && !attributes.contains_key("address_template") {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::MissingField,
                        span,
                        format!("vault target `{id}` reaches pods by address but has no `address_template`"),
                    )
                    .with_help("e.g. `address_template: \"http://{pod}.vault-internal:8200\"`"),
                );
            }
        }
    }

    // ----------------------------------------------------------------------------- expansion

    /// Register the steps of a scope, instantiating modules depth first.
    fn expand(&mut self, scope: usize, stack: &mut Vec<PathBuf>, depth: usize) {
        let document = self.scopes[scope].document.clone();
        let prefix = self.scopes[scope].prefix.clone();
        let file = document.file;
        for (index, step) in document.steps.iter().enumerate() {
            let id = format!("{prefix}{}", step.id.value);
            if self.ids.contains_key(&id) {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::DuplicateId,
                        step.id.pos.span(file),
                        format!("duplicate step id `{}`", step.id.value),
                    )
                    .with_help("step ids must be unique within a plan or module"),
                );
                continue;
            }
            match &step.module {
                None => {
                    self.ids
                        .insert(id.clone(), Named::Step(self.instances.len()));
                    self.instances.push(Instance {
                        id,
                        scope,
                        step: index,
                    });
                }
                Some(module_path) if step.uses.is_none() => {
                    let first = self.instances.len();
                    self.ids.insert(id.clone(), Named::Module(Vec::new()));
                    self.instantiate(
                        scope,
                        step,
                        &module_path.value,
                        module_path.pos,
                        &id,
                        stack,
                        depth,
                    );
                    let members: Vec<usize> = (first..self.instances.len()).collect();
                    self.ids.insert(id, Named::Module(members));
                }
                Some(_) => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn instantiate(
        &mut self,
        caller: usize,
        step: &StepDecl,
        relative: &str,
        path_pos: Pos,
        id: &str,
        stack: &mut Vec<PathBuf>,
        depth: usize,
    ) {
        let caller_file = self.scopes[caller].document.file;
        let path_span = path_pos.span(caller_file);
        let base = self
            .sources
            .path(caller_file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let path = normalize(&base.join(relative));
        if depth >= MAX_MODULE_DEPTH || stack.contains(&path) {
            let chain: Vec<String> = stack.iter().map(|p| p.display().to_string()).collect();
            self.diagnostics.push(
                Diagnostic::new(
                    Code::Module,
                    path_span,
                    format!("module `{relative}` includes itself"),
                )
                .with_help(format!(
                    "include chain: {} -> {}",
                    chain.join(" -> "),
                    path.display()
                )),
            );
            return;
        }
        let Some(module) = self.load_module(&path, relative, path_span) else {
            return;
        };
        if module.kind != DocumentKind::Module {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::Module,
                    path_span,
                    format!("`{relative}` is a plan, not a module"),
                )
                .with_help("add `kind: module` to the file, and declare targets as parameters of `type: target`"),
            );
            return;
        }
        self.declare_params(&module);
        let step_span = step.id.pos.span(caller_file);
        let mut inherited = self.scopes[caller].inherited_needs.clone();
        inherited.extend(self.resolve_needs(caller, step));
        let (supplied, skipped) = self.module_arguments(caller, step, &mut inherited);
        let values = params::bind(
            &module.params,
            module.file,
            supplied,
            Some(step_span),
            &mut self.suggester,
            self.diagnostics,
        );
        let mut target_bindings = HashMap::new();
        for declaration in &module.params {
            if declaration.param_type != ParamType::Target {
                continue;
            }
            let Some(Resolved::Str(target)) = values.get(&declaration.name.value) else {
                continue;
            };
            let span =
                argument_span(step, &declaration.name.value, caller_file).unwrap_or(step_span);
            match self.targets.get(target).map(|t| t.kind) {
                Some(kind)
                    if Some(kind) == declaration.target_kind
                        || declaration.target_kind.is_none() =>
                {
                    target_bindings.insert(declaration.name.value.clone(), target.clone());
                }
                Some(kind) => self.error(
                    Code::WrongTargetKind,
                    span,
                    format!(
                        "module parameter `{}` needs a {} target, `{target}` is a {} target",
                        declaration.name.value,
                        declaration.target_kind.map_or("", |k| k.name()),
                        kind.name()
                    ),
                ),
                None => {
                    let diagnostic = Diagnostic::new(
                        Code::UnknownReference,
                        span,
                        format!("unknown target `{target}`"),
                    );
                    let near = self
                        .suggester
                        .closest(target, self.targets.keys().map(String::as_str));
                    self.diagnostics.push(with_suggestion(diagnostic, near));
                }
            }
        }
        let skipped = skipped || self.scopes[caller].skipped;
        let scope = self.push_scope(
            format!("{id}."),
            module,
            values,
            target_bindings,
            inherited,
            skipped,
        );
        stack.push(path);
        self.expand(scope, stack, depth + 1);
        stack.pop();
    }

    fn load_module(&mut self, path: &Path, relative: &str, span: Span) -> Option<Rc<Document>> {
        if let Some(cached) = self.documents.get(path) {
            return cached.clone();
        }
        let document = match self.loader.load(path) {
            Err(error) => {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::Module,
                        span,
                        format!(
                            "cannot read module `{relative}`: {}",
                            error.to_string().to_lowercase()
                        ),
                    )
                    .with_help(format!(
                        "the path is relative to this file: {}",
                        path.display()
                    )),
                );
                None
            }
            Ok(text) => {
                let file = self.sources.add(path.to_path_buf(), text);
                let text = self.sources.get(file).text.clone();
                match crate::yaml::parse(file, &text) {
                    Err(diagnostic) => {
                        self.diagnostics.push(diagnostic);
                        None
                    }
                    Ok(root) => syntax::read_document(file, &root, self.diagnostics).map(Rc::new),
                }
            }
        };
        self.documents.insert(path.to_path_buf(), document.clone());
        document
    }

    /// The `with:` of a module step, resolved in the caller's scope, as supplied values.
    fn module_arguments(
        &mut self,
        caller: usize,
        step: &StepDecl,
        needs: &mut Vec<usize>,
    ) -> (Vec<Supplied>, bool) {
        let file = self.scopes[caller].document.file;
        let skipped = self.evaluate_when(caller, step);
        if let Some(on) = &step.on {
            self.error(
                Code::UnknownField,
                on.pos.span(file),
                "a module step has no `on`; pass targets as module arguments in `with`",
            );
        }
        if step.for_each.is_some() {
            self.error(
                Code::UnknownField,
                step.id.pos.span(file),
                "a module step cannot have `for_each`",
            );
        }
        let Some(with) = &step.with else {
            return (Vec::new(), skipped);
        };
        let Some(entries) = with.as_map() else {
            self.error(
                Code::WrongType,
                with.pos.span(file),
                format!(
                    "`with` must be a mapping of module arguments, found {}",
                    with.value.describe()
                ),
            );
            return (Vec::new(), skipped);
        };
        let mut supplied = Vec::new();
        for (key, node) in entries {
            let mut references = Vec::new();
            let Some(value) = self.resolve_value(caller, node, false, &mut references) else {
                continue;
            };
            // A module that reads a step output runs after that step.
            needs.extend(references.into_iter().map(|(index, _)| index));
            supplied.push(Supplied {
                name: key.name.clone(),
                name_span: key.pos.span(file),
                value,
                value_span: node.pos.span(file),
                from_text: false,
            });
        }
        (supplied, skipped)
    }

    // ----------------------------------------------------------------------------- steps

    fn resolve_steps(&mut self) -> (Vec<CompiledStep>, Vec<Vec<usize>>) {
        let count = self.instances.len();
        let mut compiled: Vec<Option<CompiledStep>> = Vec::with_capacity(count);
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(count);
        let mut skipped = Vec::with_capacity(count);
        for index in 0..count {
            let (step, dependencies, skip) = self.resolve_step(index);
            compiled.push(step);
            deps.push(dependencies);
            skipped.push(skip);
        }
        // Steps left out by `when` hand their dependencies on to their dependents.
        let mut effective: Vec<Option<Vec<usize>>> = vec![None; count];
        fn through(
            node: usize,
            deps: &[Vec<usize>],
            skipped: &[bool],
            effective: &mut Vec<Option<Vec<usize>>>,
            guard: &mut Vec<bool>,
        ) -> Vec<usize> {
            if let Some(known) = &effective[node] {
                return known.clone();
            }
            if guard[node] {
                return deps[node].clone();
            }
            guard[node] = true;
            let mut result = Vec::new();
            for &dep in &deps[node] {
                if skipped[dep] {
                    result.extend(through(dep, deps, skipped, effective, guard));
                } else {
                    result.push(dep);
                }
            }
            result.sort_unstable();
            result.dedup();
            guard[node] = false;
            effective[node] = Some(result.clone());
            result
        }
        let mut guard = vec![false; count];
        let mut kept_index = vec![usize::MAX; count];
        let mut steps = Vec::new();
        let mut kept_deps = Vec::new();
        for index in 0..count {
            if skipped[index] {
                continue;
            }
            let Some(step) = compiled[index].take() else {
                continue;
            };
            kept_index[index] = steps.len();
            steps.push((index, step));
        }
        for (index, _) in &steps {
            let list = through(*index, &deps, &skipped, &mut effective, &mut guard);
            kept_deps.push(list);
        }
        let steps_out: Vec<CompiledStep> = steps.into_iter().map(|(_, s)| s).collect();
        let deps_out = kept_deps
            .into_iter()
            .map(|list| {
                list.into_iter()
                    .filter_map(|d| (kept_index[d] != usize::MAX).then_some(kept_index[d]))
                    .collect()
            })
            .collect();
        (steps_out, deps_out)
    }

    /// Resolve one step: the compiled step (when it is sound), its dependencies (instance
    /// indices), and whether `when` leaves it out.
    fn resolve_step(&mut self, index: usize) -> (Option<CompiledStep>, Vec<usize>, bool) {
        let scope = self.instances[index].scope;
        let document = self.scopes[scope].document.clone();
        let step = &document.steps[self.instances[index].step];
        let file = document.file;
        let id = self.instances[index].id.clone();
        let skipped = self.scopes[scope].skipped | self.evaluate_when(scope, step);
        let mut deps = self.scopes[scope].inherited_needs.clone();
        deps.extend(self.resolve_needs(scope, step));

        let action = step.uses.as_ref().and_then(|uses| {
            let action = ActionKind::from_name(&uses.value);
            if action.is_none() {
                let names: Vec<&str> = ActionKind::ALL.iter().map(|a| a.name()).collect();
                let diagnostic = Diagnostic::new(
                    Code::UnknownAction,
                    uses.pos.span(file),
                    format!("unknown action `{}`", uses.value),
                );
                let diagnostic = match suggest::closest(&uses.value, &names) {
                    Some(near) => diagnostic.with_help(format!("did you mean `{near}`?")),
                    None => diagnostic.with_help("`planc actions` lists the catalog"),
                };
                self.diagnostics.push(diagnostic);
            }
            action
        });
        let on = self.resolve_on(scope, step, action);

        let for_each = step
            .for_each
            .as_ref()
            .and_then(|node| self.resolve_for_each(scope, node, &mut deps, index));
        let mut with = IndexMap::new();
        let mut sound = action.is_some() && on.is_some();
        if let Some(node) = &step.with {
            match &node.value {
                Value::Map(entries) => {
                    for (key, value_node) in entries {
                        let mut references = Vec::new();
                        match self.resolve_value(
                            scope,
                            value_node,
                            step.for_each.is_some(),
                            &mut references,
                        ) {
                            Some(value) => {
                                with.insert(key.name.clone(), value);
                            }
                            None => sound = false,
                        }
                        for (referenced, span) in references {
                            if referenced == index {
                                self.error(
                                    Code::UnknownReference,
                                    span,
                                    "a step cannot read its own outputs",
                                );
                                sound = false;
                            } else {
                                deps.push(referenced);
                            }
                        }
                    }
                }
                Value::Null => {}
                other => {
                    self.error(
                        Code::WrongType,
                        node.pos.span(file),
                        format!("`with` must be a mapping, found {}", other.describe()),
                    );
                    sound = false;
                }
            }
        }
        if let (true, Some(action)) = (sound, action) {
            sound = self.check_inputs(action, step, &with, file);
        }
        let allow = step
            .allow
            .iter()
            .filter_map(|text| match Code::parse(&text.value) {
                Some(code) if code.is_lint() => Some(code),
                _ => {
                    self.diagnostics.push(
                        Diagnostic::new(
                            Code::InvalidValue,
                            text.pos.span(file),
                            format!("`{}` is not an ordering lint", text.value),
                        )
                        .with_help("`allow` takes lint codes L101 to L106"),
                    );
                    None
                }
            })
            .collect();
        for text in [&step.description, &step.gate, &step.when]
            .into_iter()
            .flatten()
        {
            self.check_literal(&text.value, text.pos.span(file));
        }
        let gate = step.gate.as_ref().and_then(|gate| {
            let node = Node {
                value: Value::Str(gate.value.clone()),
                pos: gate.pos,
            };
            match self.resolve_value(scope, &node, false, &mut Vec::new()) {
                Some(Resolved::Str(text)) => Some(text),
                Some(_) => {
                    self.error(
                        Code::WrongType,
                        gate.pos.span(file),
                        "`gate` must render to a message",
                    );
                    None
                }
                None => None,
            }
        });
        let compiled = match (sound, action, on) {
            (true, Some(action), Some(on)) => Some(CompiledStep {
                id,
                action,
                on,
                description: step.description.as_ref().map(|d| d.value.clone()),
                with,
                for_each,
                timeout_secs: step.timeout.as_ref().and_then(|t| parse_duration(&t.value)),
                retry: step.retry.as_ref().map(|r| Retry {
                    attempts: r.attempts,
                    backoff_secs: r
                        .backoff
                        .as_ref()
                        .and_then(|b| parse_duration(&b.value))
                        .unwrap_or(2),
                }),
                gate,
                allow,
                span: step.id.pos.span(file),
            }),
            _ => None,
        };
        (compiled, deps, skipped)
    }

    fn evaluate_when(&mut self, scope: usize, step: &StepDecl) -> bool {
        let Some(when) = &step.when else {
            return false;
        };
        let file = self.scopes[scope].document.file;
        let span = when.pos.span(file);
        let references = match expr::condition_references(&when.value) {
            Ok(references) => references,
            Err(message) => {
                self.error(Code::Expression, span, message);
                return false;
            }
        };
        let readable = references
            .iter()
            .map(|reference| self.check_template_reference(scope, reference, span))
            .fold(true, |all, ok| all & ok);
        if !readable {
            return false;
        }
        let context = self.scopes[scope].context.clone();
        match expr::evaluate_condition(&when.value, &context) {
            Ok(value) => !value,
            Err(message) => {
                self.error(Code::Expression, span, message);
                false
            }
        }
    }

    fn resolve_needs(&mut self, scope: usize, step: &StepDecl) -> Vec<usize> {
        let file = self.scopes[scope].document.file;
        let prefix = self.scopes[scope].prefix.clone();
        let mut deps = Vec::new();
        for need in &step.needs {
            let id = format!("{prefix}{}", need.value);
            match self.ids.get(&id) {
                Some(Named::Step(index)) => deps.push(*index),
                Some(Named::Module(members)) => deps.extend(members.iter().copied()),
                None => {
                    let diagnostic = Diagnostic::new(
                        Code::UnknownDependency,
                        need.pos.span(file),
                        format!(
                            "step `{}` needs `{}`, which is not a step",
                            step.id.value, need.value
                        ),
                    );
                    let local = self.scopes[scope].document.steps.iter();
                    let near = self
                        .suggester
                        .closest(&need.value, local.map(|s| s.id.value.as_str()));
                    self.diagnostics.push(with_suggestion(diagnostic, near));
                }
            }
        }
        deps
    }

    fn resolve_on(
        &mut self,
        scope: usize,
        step: &StepDecl,
        action: Option<ActionKind>,
    ) -> Option<String> {
        let file = self.scopes[scope].document.file;
        let Some(on) = &step.on else {
            if step.uses.is_some() {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::MissingField,
                        step.id.pos.span(file),
                        format!("step `{}` has no `on`", step.id.value),
                    )
                    .with_help(match action {
                        Some(action) => format!(
                            "`{}` runs on {}",
                            action.name(),
                            catalog::spec(action).target.describe()
                        ),
                        None => "name the target the action runs on".into(),
                    }),
                );
            }
            return None;
        };
        let span = on.pos.span(file);
        let in_module = !self.scopes[scope].prefix.is_empty();
        let target_id = if in_module {
            let bound = self.scopes[scope].target_bindings.get(&on.value).cloned();
            self.used_params.insert((file, on.value.clone()));
            match bound {
                Some(id) => id,
                None => {
                    let declared_as_target = self.scopes[scope]
                        .document
                        .params
                        .iter()
                        .any(|p| p.name.value == on.value && p.param_type == ParamType::Target);
                    if !declared_as_target {
                        self.diagnostics.push(
                            Diagnostic::new(
                                Code::UnknownReference,
                                span,
                                format!("`{}` is not a target parameter of this module", on.value),
                            )
                            .with_help(
                                "declare it under `params` with `type: target` and a `target_kind`",
                            ),
                        );
                    }
                    return None;
                }
            }
        } else {
            on.value.clone()
        };
        let Some(target) = self.targets.get(&target_id) else {
            let diagnostic = Diagnostic::new(
                Code::UnknownReference,
                span,
                format!("unknown target `{}`", on.value),
            );
            let near = self
                .suggester
                .closest(&on.value, self.targets.keys().map(String::as_str));
            self.diagnostics.push(with_suggestion(diagnostic, near));
            return None;
        };
        if let Some(action) = action {
            let requirement = catalog::spec(action).target;
            if !requirement.accepts(target.kind) {
                self.diagnostics.push(Diagnostic::new(
                    Code::WrongTargetKind,
                    span,
                    format!(
                        "`{}` runs on {}, `{}` is a {} target",
                        action.name(),
                        requirement.describe(),
                        on.value,
                        target.kind.name()
                    ),
                ));
                return None;
            }
        }
        Some(target_id)
    }

    fn resolve_for_each(
        &mut self,
        scope: usize,
        node: &Node,
        deps: &mut Vec<usize>,
        index: usize,
    ) -> Option<Resolved> {
        let file = self.scopes[scope].document.file;
        let mut references = Vec::new();
        let value = self.resolve_value(scope, node, false, &mut references)?;
        for (referenced, span) in references {
            if referenced == index {
                self.error(
                    Code::UnknownReference,
                    span,
                    "a step cannot iterate over its own outputs",
                );
                return None;
            }
            deps.push(referenced);
        }
        match value {
            Resolved::List(_) | Resolved::StepOutput { .. } => Some(value),
            other => {
                self.error(
                    Code::WrongType,
                    node.pos.span(file),
                    format!(
                        "`for_each` must be a list or a step output, found {}",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    /// Resolve a value node in a scope. Step outputs it reads are pushed to `references`.
    fn resolve_value(
        &mut self,
        scope: usize,
        node: &Node,
        item_allowed: bool,
        references: &mut Vec<(usize, Span)>,
    ) -> Option<Resolved> {
        let file = self.scopes[scope].document.file;
        let span = node.pos.span(file);
        match &node.value {
            Value::Null => Some(Resolved::Null),
            Value::Bool(b) => Some(Resolved::Bool(*b)),
            Value::Int(i) => Some(Resolved::Int(*i)),
            Value::Float(f) => Some(Resolved::Float(*f)),
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match self.resolve_value(scope, item, item_allowed, references) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                ok.then_some(Resolved::List(out))
            }
            Value::Map(entries) => {
                let mut out = IndexMap::with_capacity(entries.len());
                let mut ok = true;
                for (key, value) in entries {
                    match self.resolve_value(scope, value, item_allowed, references) {
                        Some(v) => {
                            out.insert(key.name.clone(), v);
                        }
                        None => ok = false,
                    }
                }
                ok.then_some(Resolved::Map(out))
            }
            Value::Str(text) if !expr::is_template(text) => {
                self.check_literal(text, span);
                Some(Resolved::Str(text.clone()))
            }
            Value::Str(text) => match expr::classify(text) {
                Err(message) => {
                    self.diagnostics.push(
                        Diagnostic::new(Code::Expression, span, message).with_help(
                            "write apply-time references alone: `\"{{ steps.ID.outputs.NAME }}\"`",
                        ),
                    );
                    None
                }
                Ok(Expression::Item { path }) => {
                    if item_allowed {
                        Some(Resolved::Item { path })
                    } else {
                        self.error(
                            Code::UnknownReference,
                            span,
                            "`item` is only defined in a step with `for_each`",
                        );
                        None
                    }
                }
                Ok(Expression::StepOutput { path }) => {
                    self.resolve_step_output(scope, &path, span, references)
                }
                Ok(Expression::Param { name }) => {
                    self.used_params.insert((file, name.clone()));
                    match self.scopes[scope].values.get(&name) {
                        Some(value) => Some(value.clone()),
                        None => {
                            let values = std::mem::take(&mut self.scopes[scope].values);
                            self.unknown_param(&name, span, &values);
                            self.scopes[scope].values = values;
                            None
                        }
                    }
                }
                Ok(Expression::Template { references: names }) => {
                    let readable = names
                        .iter()
                        .map(|name| self.check_template_reference(scope, name, span))
                        .fold(true, |all, ok| all & ok);
                    if !readable {
                        return None;
                    }
                    let context = self.scopes[scope].context.clone();
                    self.render(text, &context, span).map(Resolved::Str)
                }
            },
        }
    }

    /// Is a reference inside a compile-time template readable? Reports it when not.
    fn check_template_reference(&mut self, scope: usize, reference: &str, span: Span) -> bool {
        let file = self.scopes[scope].document.file;
        let mut parts = reference.split('.');
        match parts.next() {
            Some("params") => {
                let name = parts.next().unwrap_or("");
                self.used_params.insert((file, name.to_string()));
                match self.scopes[scope].values.get(name) {
                    Some(Resolved::Secret { .. }) => {
                        self.secret_interpolated(name, span);
                        false
                    }
                    Some(_) => true,
                    None => {
                        let values = std::mem::take(&mut self.scopes[scope].values);
                        self.unknown_param(name, span, &values);
                        self.scopes[scope].values = values;
                        false
                    }
                }
            }
            Some("targets") => {
                let name = parts.next().unwrap_or("");
                let attribute = parts.next();
                let in_module = !self.scopes[scope].prefix.is_empty();
                let target_id = if in_module {
                    self.used_params.insert((file, name.to_string()));
                    self.scopes[scope].target_bindings.get(name).cloned()
                } else {
                    Some(name.to_string())
                };
                let Some(target) = target_id.and_then(|id| self.targets.get(&id)) else {
                    let near = if in_module {
                        let bindings = self.scopes[scope].target_bindings.keys();
                        self.suggester.closest(name, bindings.map(String::as_str))
                    } else {
                        let targets = self.targets.keys();
                        self.suggester.closest(name, targets.map(String::as_str))
                    };
                    let diagnostic = Diagnostic::new(
                        Code::UnknownReference,
                        span,
                        format!("unknown target `{name}`"),
                    );
                    self.diagnostics.push(with_suggestion(diagnostic, near));
                    return false;
                };
                if let Some(attribute) = attribute
                    && attribute != "id"
                    && attribute != "kind"
                    && !target.attributes.contains_key(attribute)
                {
                    let kind = target.kind;
                    let (required, optional) = syntax::target_attributes(kind);
                    let known: Vec<&str> = required.iter().chain(optional).copied().collect();
                    let diagnostic = Diagnostic::new(
                        Code::UnknownReference,
                        span,
                        format!("a {} target has no attribute `{attribute}`", kind.name()),
                    );
                    let near = suggest::closest(attribute, &known);
                    self.diagnostics.push(with_suggestion(diagnostic, near));
                    return false;
                }
                if let Some(attribute) = attribute
                    && matches!(
                        target.attributes.get(attribute),
                        Some(Resolved::Secret { .. })
                    )
                {
                    self.secret_interpolated(attribute, span);
                    return false;
                }
                true
            }
            Some(root) => {
                self.diagnostics.push(
                    Diagnostic::new(Code::UnknownReference, span, format!("unknown variable `{root}`"))
                        .with_help("expressions read `params.NAME`, `targets.ID.ATTRIBUTE`, `steps.ID.outputs.NAME` and `item`"),
                );
                false
            }
            None => true,
        }
    }

    fn resolve_step_output(
        &mut self,
        scope: usize,
        path: &[String],
        span: Span,
        references: &mut Vec<(usize, Span)>,
    ) -> Option<Resolved> {
        let prefix = self.scopes[scope].prefix.clone();
        // The id may itself contain dots (a step inside a module instance): the longest match.
        let outputs_at = path.iter().rposition(|p| p == "outputs");
        let found = outputs_at.and_then(|at| {
            (1..=at).rev().find_map(|len| {
                let id = format!("{prefix}{}", path[..len].join("."));
                match self.ids.get(&id) {
                    Some(Named::Step(index)) if len == at => Some((*index, id)),
                    _ => None,
                }
            })
        });
        let Some((index, id)) = found else {
            let written = path.join(".");
            self.diagnostics.push(
                Diagnostic::new(
                    Code::UnknownReference,
                    span,
                    format!("`steps.{written}` does not name an output of a step"),
                )
                .with_help(
                    "write `steps.ID.outputs.NAME` with the id of a step of this plan or module",
                ),
            );
            return None;
        };
        let at = outputs_at.expect("found implies outputs");
        let Some(output) = path.get(at + 1).filter(|_| path.len() == at + 2) else {
            self.error(
                Code::UnknownReference,
                span,
                format!(
                    "name one output of step `{id}`: `steps.{}.outputs.NAME`",
                    path[..at].join(".")
                ),
            );
            return None;
        };
        let instance = &self.instances[index];
        let step_decl = &self.scopes[instance.scope].document.steps[instance.step];
        if let Some(action) = step_decl
            .uses
            .as_ref()
            .and_then(|u| ActionKind::from_name(&u.value))
        {
            let spec = catalog::spec(action);
            match spec.outputs.iter().find(|o| o.name == output) {
                None => {
                    let names: Vec<&str> = spec.outputs.iter().map(|o| o.name).collect();
                    let diagnostic = Diagnostic::new(
                        Code::UnknownReference,
                        span,
                        format!("step `{id}` (`{}`) has no output `{output}`", action.name()),
                    );
                    let diagnostic = if names.is_empty() {
                        diagnostic.with_help(format!("`{}` has no outputs", action.name()))
                    } else {
                        diagnostic.with_help(format!("outputs: {}", names.join(", ")))
                    };
                    self.diagnostics.push(diagnostic);
                    return None;
                }
                Some(found) if found.sensitive => {
                    references.push((index, span));
                    return Some(Resolved::Secret {
                        param: format!("{id}.{output}"),
                        reference: format!("step:{id}.{output}"),
                    });
                }
                Some(_) => {}
            }
        }
        references.push((index, span));
        Some(Resolved::StepOutput {
            step: id,
            output: output.clone(),
        })
    }

    /// Secret and target inputs, then the typed input check.
    fn check_inputs(
        &mut self,
        action: ActionKind,
        step: &StepDecl,
        with: &IndexMap<String, Resolved>,
        file: FileId,
    ) -> bool {
        let spec = catalog::spec(action);
        let field_span = |name: &str| {
            step.with
                .as_ref()
                .and_then(|w| w.get(name))
                .map(|n| n.pos.span(file))
                .unwrap_or(step.id.pos.span(file))
        };
        let mut sound = true;
        for (name, value) in with {
            let secret_input = spec.secret_inputs.contains(&name.as_str());
            let holds_secret = contains_secret(value);
            if secret_input && !matches!(value, Resolved::Secret { .. }) {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::SecretLiteral,
                        field_span(name),
                        format!("`{name}` of `{}` is a secret and must be given by reference", action.name()),
                    )
                    .with_help("write `\"{{ params.NAME }}\"` with a parameter of `type: secret`, or a sensitive step output"),
                );
                sound = false;
            } else if !secret_input && holds_secret {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::SecretLiteral,
                        field_span(name),
                        format!(
                            "`{name}` of `{}` is not a secret input, but is given a secret",
                            action.name()
                        ),
                    )
                    .with_help(format!(
                        "secret inputs of `{}`: {}",
                        action.name(),
                        if spec.secret_inputs.is_empty() {
                            "none".to_string()
                        } else {
                            spec.secret_inputs.join(", ")
                        }
                    )),
                );
                sound = false;
            }
        }
        for (name, requirement) in spec.target_inputs {
            let Some(Resolved::Str(target)) = with.get(*name) else {
                continue;
            };
            match self.targets.get(target).map(|t| t.kind) {
                Some(kind) if requirement.accepts(kind) => {}
                Some(kind) => {
                    self.error(
                        Code::WrongTargetKind,
                        field_span(name),
                        format!(
                            "`{name}` needs {}, `{target}` is a {} target",
                            requirement.describe(),
                            kind.name()
                        ),
                    );
                    sound = false;
                }
                None => {
                    let diagnostic = Diagnostic::new(
                        Code::UnknownReference,
                        field_span(name),
                        format!("unknown target `{target}`"),
                    );
                    let near = self
                        .suggester
                        .closest(target, self.targets.keys().map(String::as_str));
                    self.diagnostics.push(with_suggestion(diagnostic, near));
                    sound = false;
                }
            }
        }
        if !sound {
            return false;
        }
        let json: serde_json::Map<String, serde_json::Value> = with
            .iter()
            .map(|(k, v)| (k.clone(), v.to_check_json()))
            .collect();
        match action.check_input(json.into()) {
            Ok(()) => true,
            Err(error) => {
                let unknown_field = error.message.starts_with("unknown field");
                let span = locate(step.with.as_ref(), &error.path, file, unknown_field)
                    .unwrap_or(step.id.pos.span(file));
                let field = error
                    .path
                    .iter()
                    .map(|s| match s {
                        PathSegment::Field(f) => f.clone(),
                        PathSegment::Index(i) => format!("[{i}]"),
                    })
                    .collect::<Vec<_>>()
                    .join(".")
                    .replace(".[", "[");
                let message = if field.is_empty() {
                    format!("input of `{}`: {}", action.name(), error.message)
                } else {
                    format!("`{field}` of `{}`: {}", action.name(), error.message)
                };
                self.diagnostics.push(
                    Diagnostic::new(Code::InvalidInput, span, message).with_help(format!(
                        "`planc actions {}` shows its inputs",
                        action.name()
                    )),
                );
                false
            }
        }
    }

    // ----------------------------------------------------------------------------- helpers

    fn render(&mut self, text: &str, context: &minijinja::Value, span: Span) -> Option<String> {
        match expr::render(text, context) {
            Ok(rendered) => Some(rendered),
            Err(message) => {
                self.error(Code::Expression, span, message);
                None
            }
        }
    }

    fn check_literal(&mut self, text: &str, span: Span) {
        if params::contains_token(text) {
            self.diagnostics.push(
                Diagnostic::new(Code::SecretLiteral, span, "this value looks like a vault token")
                    .with_help("never write tokens into a plan: declare a parameter of `type: secret` with `env:`, `file:` or `prompt`"),
            );
        }
    }

    fn declare_params(&mut self, document: &Document) {
        for param in &document.params {
            self.declared_params
                .insert((document.file, param.name.value.clone()));
        }
    }

    /// Report a read of a parameter without value, unless it is declared: then its own
    /// diagnostic (missing, wrong type, secret literal) already explains it.
    fn unknown_param(&mut self, name: &str, span: Span, values: &IndexMap<String, Resolved>) {
        if self
            .declared_params
            .contains(&(span.file, name.to_string()))
        {
            return;
        }
        let diagnostic = Diagnostic::new(
            Code::UnknownReference,
            span,
            format!("unknown parameter `{name}`"),
        );
        let near = self
            .suggester
            .closest(name, values.keys().map(String::as_str));
        self.diagnostics.push(with_suggestion(diagnostic, near));
    }

    fn secret_interpolated(&mut self, name: &str, span: Span) {
        self.diagnostics.push(
            Diagnostic::new(
                Code::SecretLiteral,
                span,
                format!("secret `{name}` cannot be written into a plain value"),
            )
            .with_help(
                "pass secrets whole, as `\"{{ params.NAME }}\"`, to an input that takes a secret",
            ),
        );
    }

    fn report_unused_params(&mut self) {
        let mut seen = HashSet::new();
        for scope in &self.scopes {
            let document = &scope.document;
            if !seen.insert(document.file) {
                continue;
            }
            for param in &document.params {
                if !self
                    .used_params
                    .contains(&(document.file, param.name.value.clone()))
                {
                    self.diagnostics.push(
                        Diagnostic::new(
                            Code::UnusedParam,
                            param.name.pos.span(document.file),
                            format!("parameter `{}` is never used", param.name.value),
                        )
                        .with_help("remove it, or read it with `{{ params.NAME }}`"),
                    );
                }
            }
        }
    }
}

/// Target attributes that are integers (every other is a string).
const INTEGER_ATTRIBUTES: &[&str] = &["port", "replicas"];

fn fill_target_defaults(kind: TargetKind, attributes: &mut IndexMap<String, Resolved>) {
    let text = |value: &str| Resolved::Str(value.into());
    let defaults: Vec<(&str, Resolved)> = match kind {
        TargetKind::Kubernetes => vec![("namespace", text("default"))],
        TargetKind::Vault => {
            crate::flavour::fill_vault_defaults(attributes);
            vec![
                ("port", Resolved::Int(8200)),
                ("replicas", Resolved::Int(3)),
                ("reach", text("port-forward")),
            ]
        }
        TargetKind::Transit => vec![("mount_path", text("transit/"))],
        _ => Vec::new(),
    };
    for (name, value) in defaults {
        attributes.entry(name.to_string()).or_insert(value);
    }
}

fn target_json(target: &CompiledTarget) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("id".into(), target.id.clone().into());
    map.insert("kind".into(), target.kind.name().into());
    for (name, value) in &target.attributes {
        if let Some(plain) = value.to_context() {
            map.insert(name.clone(), plain);
        }
    }
    map.into()
}

fn contains_secret(value: &Resolved) -> bool {
    match value {
        Resolved::Secret { .. } => true,
        Resolved::List(items) => items.iter().any(contains_secret),
        Resolved::Map(map) => map.values().any(contains_secret),
        _ => false,
    }
}

/// The node an input error path points at, as deep as the path goes.
fn locate(
    with: Option<&Node>,
    path: &[PathSegment],
    file: FileId,
    key_of_last: bool,
) -> Option<Span> {
    let mut node = with?;
    for (index, segment) in path.iter().enumerate() {
        if key_of_last
            && index + 1 == path.len()
            && let (PathSegment::Field(name), Value::Map(entries)) = (segment, &node.value)
            && let Some((key, _)) = entries.iter().find(|(k, _)| &k.name == name)
        {
            return Some(key.pos.span(file));
        }
        let next = match (segment, &node.value) {
            (PathSegment::Field(name), Value::Map(entries)) => entries
                .iter()
                .find(|(k, _)| &k.name == name)
                .map(|(_, v)| v),
            (PathSegment::Index(i), Value::Seq(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => break,
        }
    }
    Some(node.pos.span(file))
}

fn argument_span(step: &StepDecl, name: &str, file: FileId) -> Option<Span> {
    step.with.as_ref()?.get(name).map(|n| n.pos.span(file))
}

fn with_suggestion(diagnostic: Diagnostic, near: Option<&str>) -> Diagnostic {
    match near {
        Some(near) => diagnostic.with_help(format!("did you mean `{near}`?")),
        None => diagnostic,
    }
}

/// `a/./b/../c` to `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}
