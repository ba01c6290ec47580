//! The execution graph: steps and their dependencies with petgraph, cycle detection, a
//! deterministic topological order with levels, the transitive reduction for display, and the
//! text, DOT, Mermaid and JSON renderings.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;

use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::json;

use crate::catalog::SideEffect;

/// What the graph shows of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    pub id: String,
    pub action: &'static str,
    pub on: String,
    /// Runs once per element, known at apply time: drawn as a group.
    pub for_each: bool,
    pub gate: bool,
    pub side_effect: SideEffect,
}

/// Steps (indexed in declaration order) and what each directly depends on.
#[derive(Debug, Clone)]
pub struct ExecutionGraph {
    pub nodes: Vec<GraphNode>,
    /// Direct dependencies of each node, sorted, without repeats.
    pub deps: Vec<Vec<usize>>,
    /// Topological order; among ready steps the earlier declared goes first.
    pub order: Vec<usize>,
    /// Longest distance from a step without dependencies.
    pub levels: Vec<usize>,
}

/// Ancestor visits the transitive reduction may make before it shows direct dependencies.
pub const REDUCTION_BUDGET: usize = 50_000_000;

/// Output formats of `planc graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Text,
    Dot,
    Mermaid,
    Json,
}

impl ExecutionGraph {
    /// Build the graph, or return the cycles (each as a closed path of node indices).
    pub fn build(
        nodes: Vec<GraphNode>,
        mut deps: Vec<Vec<usize>>,
    ) -> Result<Self, Vec<Vec<usize>>> {
        for list in &mut deps {
            list.sort_unstable();
            list.dedup();
        }
        let count = nodes.len();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); count];
        let mut waiting: Vec<usize> = vec![0; count];
        for (node, list) in deps.iter().enumerate() {
            waiting[node] = list.len();
            for &dep in list {
                dependents[dep].push(node);
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> = (0..count)
            .filter(|&n| waiting[n] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(count);
        let mut levels = vec![0; count];
        while let Some(Reverse(node)) = ready.pop() {
            order.push(node);
            for &next in &dependents[node] {
                levels[next] = levels[next].max(levels[node] + 1);
                waiting[next] -= 1;
                if waiting[next] == 0 {
                    ready.push(Reverse(next));
                }
            }
        }
        if order.len() < count {
            return Err(find_cycles(&deps));
        }
        Ok(ExecutionGraph {
            nodes,
            deps,
            order,
            levels,
        })
    }

    pub fn level_count(&self) -> usize {
        self.levels.iter().max().map_or(0, |m| m + 1)
    }

    /// Steps in display order: by level, then declaration.
    pub fn display_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.sort_by_key(|&n| (self.levels[n], n));
        order
    }

    /// The dependencies left after the transitive reduction, per node, in declaration order.
    ///
    /// A dependency is dropped when another dependency of the same step already needs it,
    /// directly or not. Each step with two or more dependencies walks its ancestors once, with
    /// no closure matrix, so a chain of 200,000 steps costs nothing; a graph that would take
    /// more than [`REDUCTION_BUDGET`] visits keeps its direct dependencies instead.
    pub fn reduced_deps(&self) -> Vec<Vec<usize>> {
        let count = self.nodes.len();
        let mut position = vec![0; count];
        for (at, &node) in self.order.iter().enumerate() {
            position[node] = at;
        }
        let mut budget = REDUCTION_BUDGET;
        // `marked[a] == node` when `a` is an ancestor of a dependency of `node` already kept.
        let mut marked = vec![usize::MAX; count];
        let mut stack = Vec::new();
        let mut reduced = Vec::with_capacity(count);
        for (node, deps) in self.deps.iter().enumerate() {
            if deps.len() < 2 {
                reduced.push(deps.clone());
                continue;
            }
            let mut latest_first = deps.clone();
            latest_first.sort_unstable_by_key(|&dep| Reverse(position[dep]));
            let mut kept = Vec::new();
            for dep in latest_first {
                if marked[dep] == node {
                    continue;
                }
                kept.push(dep);
                stack.push(dep);
                while let Some(at) = stack.pop() {
                    for &ancestor in &self.deps[at] {
                        if marked[ancestor] != node {
                            marked[ancestor] = node;
                            stack.push(ancestor);
                            budget = budget.saturating_sub(1);
                        }
                    }
                }
                if budget == 0 {
                    return self.deps.clone();
                }
            }
            kept.sort_unstable();
            reduced.push(kept);
        }
        reduced
    }

    pub fn render(&self, plan_name: &str, format: GraphFormat) -> String {
        match format {
            GraphFormat::Text => self.render_text(plan_name),
            GraphFormat::Dot => self.render_dot(plan_name),
            GraphFormat::Mermaid => self.render_mermaid(),
            GraphFormat::Json => {
                let mut text =
                    serde_json::to_string_pretty(&self.to_json()).expect("graph serialises");
                text.push('\n');
                text
            }
        }
    }

    /// One line per step, by level then declaration, with its reduced dependencies: stable, so
    /// two versions of a plan diff line by line.
    fn render_text(&self, plan_name: &str) -> String {
        let reduced = self.reduced_deps();
        let width = self.nodes.iter().map(|n| n.id.len()).max().unwrap_or(0);
        let mut out = format!(
            "# {plan_name}: {} steps in {} levels; `*` runs per item, `?` waits for approval, `!` is irreversible\n",
            self.nodes.len(),
            self.level_count()
        );
        for node in self.display_order() {
            let info = &self.nodes[node];
            let marks = format!(
                "{}{}{}",
                if info.for_each { "*" } else { " " },
                if info.gate { "?" } else { " " },
                if info.side_effect == SideEffect::Irreversible {
                    "!"
                } else {
                    " "
                },
            );
            let _ = write!(
                out,
                "{:>3} {marks} {:<width$}  {} on {}",
                self.levels[node], info.id, info.action, info.on
            );
            if !reduced[node].is_empty() {
                let after: Vec<&str> = reduced[node]
                    .iter()
                    .map(|&d| self.nodes[d].id.as_str())
                    .collect();
                let _ = write!(out, "  <- {}", after.join(", "));
            }
            out.push('\n');
        }
        out
    }

    fn render_dot(&self, plan_name: &str) -> String {
        let reduced = self.reduced_deps();
        let mut out = format!(
            "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
            escape(plan_name)
        );
        for node in self.display_order() {
            let info = &self.nodes[node];
            let mut attributes = vec![format!(
                "label=\"{}\\n{} on {}\"",
                escape(&info.id),
                info.action,
                escape(&info.on)
            )];
            if info.for_each {
                attributes.push("peripheries=2".into());
            }
            if info.gate {
                attributes.push("style=dashed".into());
            }
            if info.side_effect == SideEffect::Irreversible {
                attributes.push("color=red".into());
            }
            let _ = writeln!(
                out,
                "  \"{}\" [{}];",
                escape(&info.id),
                attributes.join(", ")
            );
        }
        for node in self.display_order() {
            for &dep in &reduced[node] {
                let _ = writeln!(
                    out,
                    "  \"{}\" -> \"{}\";",
                    escape(&self.nodes[dep].id),
                    escape(&self.nodes[node].id)
                );
            }
        }
        out.push_str("}\n");
        out
    }

    fn render_mermaid(&self) -> String {
        let reduced = self.reduced_deps();
        let mut out = String::from("flowchart TD\n");
        for node in self.display_order() {
            let info = &self.nodes[node];
            let label =
                format!("{}<br/>{} on {}", info.id, info.action, info.on).replace('"', "#quot;");
            let shape = if info.for_each {
                format!("[[\"{label}\"]]")
            } else if info.gate {
                format!("{{{{\"{label}\"}}}}")
            } else {
                format!("[\"{label}\"]")
            };
            let _ = writeln!(out, "  s{node}{shape}");
        }
        for node in self.display_order() {
            for &dep in &reduced[node] {
                let _ = writeln!(out, "  s{dep} --> s{node}");
            }
        }
        let irreversible: Vec<String> = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].side_effect == SideEffect::Irreversible)
            .map(|n| format!("s{n}"))
            .collect();
        if !irreversible.is_empty() {
            out.push_str("  classDef irreversible stroke:#c00,stroke-width:2px\n");
            let _ = writeln!(out, "  class {} irreversible", irreversible.join(","));
        }
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        let reduced = self.reduced_deps();
        let nodes: Vec<serde_json::Value> = self
            .display_order()
            .into_iter()
            .map(|n| {
                let info = &self.nodes[n];
                json!({
                    "id": info.id,
                    "uses": info.action,
                    "on": info.on,
                    "level": self.levels[n],
                    "for_each": info.for_each,
                    "gate": info.gate,
                    "side_effect": info.side_effect.as_str(),
                    "after": reduced[n].iter().map(|&d| self.nodes[d].id.clone()).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "levels": self.level_count(), "steps": nodes })
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// One closed path per strongly connected component that holds a cycle.
fn find_cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut graph: DiGraph<(), (), u32> = DiGraph::with_capacity(deps.len(), 0);
    for _ in deps {
        graph.add_node(());
    }
    for (node, list) in deps.iter().enumerate() {
        for &dep in list {
            graph.add_edge(NodeIndex::new(node), NodeIndex::new(dep), ());
        }
    }
    let mut cycles = Vec::new();
    // Kosaraju's walk is iterative: a cycle through 200,000 steps must not overflow the stack
    // (petgraph's Tarjan recurses once per node).
    let mut component_of = vec![usize::MAX; deps.len()];
    for (index, component) in kosaraju_scc(&graph).into_iter().enumerate() {
        let members: Vec<usize> = component.iter().map(|n| n.index()).collect();
        let self_loop = members.len() == 1 && deps[members[0]].contains(&members[0]);
        if members.len() < 2 && !self_loop {
            continue;
        }
        for &member in &members {
            component_of[member] = index;
        }
        let start = *members.iter().min().expect("component is not empty");
        cycles.push(path_back_to(start, deps, &component_of));
    }
    cycles.sort();
    cycles
}

/// A shortest path start -> ... -> start following "depends on" edges inside start's component.
fn path_back_to(start: usize, deps: &[Vec<usize>], component_of: &[usize]) -> Vec<usize> {
    let mut previous: std::collections::HashMap<usize, usize> = Default::default();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in &deps[node] {
            if component_of[next] != component_of[start] {
                continue;
            }
            if next == start {
                let mut path = vec![start];
                let mut at = node;
                while at != start {
                    path.push(at);
                    at = previous[&at];
                }
                path.push(start);
                let last = path.len() - 1;
                path[1..last].reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(entry) = previous.entry(next) {
                entry.insert(node);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> GraphNode {
        GraphNode {
            id: id.into(),
            action: "vault.leader",
            on: "v".into(),
            for_each: false,
            gate: false,
            side_effect: SideEffect::ReadOnly,
        }
    }

    #[test]
    fn levels_order_and_reduction() {
        // c needs a and b, b needs a: the edge a -> c is redundant.
        let graph = ExecutionGraph::build(
            vec![node("a"), node("b"), node("c")],
            vec![vec![], vec![0], vec![0, 1]],
        )
        .unwrap();
        assert_eq!(graph.order, vec![0, 1, 2]);
        assert_eq!(graph.levels, vec![0, 1, 2]);
        assert_eq!(graph.reduced_deps(), vec![vec![], vec![0], vec![1]]);
    }

    #[test]
    fn cycles_are_paths() {
        // a needs c, b needs a, c needs b.
        let cycles = ExecutionGraph::build(
            vec![node("a"), node("b"), node("c")],
            vec![vec![2], vec![0], vec![1]],
        )
        .unwrap_err();
        assert_eq!(cycles, vec![vec![0, 2, 1, 0]]);
    }

    /// The reduction keeps exactly the dependencies no other dependency reaches, checked
    /// against a reachability matrix on many small random graphs.
    #[test]
    fn reduction_matches_reachability() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % bound.max(1)
        };
        for _ in 0..300 {
            let count = 1 + next(12);
            let deps: Vec<Vec<usize>> = (0..count)
                .map(|n| {
                    (0..next(4))
                        .map(|_| next(n.max(1)))
                        .filter(|&d| d < n)
                        .collect()
                })
                .collect();
            let nodes = (0..count).map(|n| node(&format!("s{n}"))).collect();
            let graph = ExecutionGraph::build(nodes, deps).expect("acyclic by construction");
            let mut reaches = vec![vec![false; count]; count];
            for n in 0..count {
                for &d in &graph.deps[n] {
                    let through_d = reaches[d].clone();
                    reaches[n][d] = true;
                    for (reached, via) in reaches[n].iter_mut().zip(through_d) {
                        *reached |= via;
                    }
                }
            }
            let expected: Vec<Vec<usize>> = (0..count)
                .map(|n| {
                    let direct = &graph.deps[n];
                    direct
                        .iter()
                        .copied()
                        .filter(|&d| !direct.iter().any(|&other| other != d && reaches[other][d]))
                        .collect()
                })
                .collect();
            assert_eq!(graph.reduced_deps(), expected, "deps {:?}", graph.deps);
        }
    }
}
