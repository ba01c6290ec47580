//! "Did you mean": the known name nearest a misspelt one. Searches of open-ended name sets (step
//! ids, targets, parameters) share a budget of comparisons per compilation, so a file with
//! thousands of misspellings is still checked in linear time; past the budget no name is offered.

/// Comparisons one compilation may spend on suggestions from open-ended name sets: far more than
/// any plan a person writes needs, a fraction of a second of work.
pub const BUDGET: usize = 2_000_000;

/// The budget of one compilation.
#[derive(Debug)]
pub struct Suggester {
    remaining: usize,
}

impl Default for Suggester {
    fn default() -> Suggester {
        Suggester { remaining: BUDGET }
    }
}

impl Suggester {
    /// The name of `known` nearest `name`, if close enough to be a likely typo and the budget
    /// covers a search of all of `known`.
    pub fn closest<'a>(
        &mut self,
        name: &str,
        known: impl ExactSizeIterator<Item = &'a str>,
    ) -> Option<&'a str> {
        if known.len() > self.remaining {
            self.remaining = 0;
            return None;
        }
        self.remaining -= known.len();
        nearest(name, known)
    }
}

/// The nearest of a small, fixed list (fields, actions): no budget needed.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    nearest(name, known.iter().copied())
}

fn nearest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let name: Vec<char> = name.chars().collect();
    let mut rows = Rows::default();
    known
        .filter_map(|k| {
            let limit = 2.max(k.len() / 4);
            rows.distance_within(&name, k, limit).map(|d| (d, k))
        })
        .min()
        .map(|(_, k)| k)
}

/// Two reusable rows of the edit-distance table.
#[derive(Default)]
struct Rows {
    previous: Vec<usize>,
    current: Vec<usize>,
    candidate: Vec<char>,
}

impl Rows {
    /// The Levenshtein distance from `a` to `b` when it is at most `limit`: only the cells
    /// within `limit` of the diagonal are computed, and a row past the limit stops the search.
    fn distance_within(&mut self, a: &[char], b: &str, limit: usize) -> Option<usize> {
        self.candidate.clear();
        self.candidate.extend(b.chars());
        let b = &self.candidate;
        if a.len().abs_diff(b.len()) > limit {
            return None;
        }
        let beyond = limit + 1;
        self.previous.clear();
        self.previous
            .extend((0..=b.len()).map(|j| if j <= limit { j } else { beyond }));
        for i in 1..=a.len() {
            self.current.clear();
            self.current.resize(b.len() + 1, beyond);
            if i <= limit {
                self.current[0] = i;
            }
            let mut row_min = self.current[0];
            for j in i.saturating_sub(limit).max(1)..=(i + limit).min(b.len()) {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let value = (self.previous[j - 1] + cost)
                    .min(self.previous[j] + 1)
                    .min(self.current[j - 1] + 1)
                    .min(beyond);
                self.current[j] = value;
                row_min = row_min.min(value);
            }
            if row_min > limit {
                return None;
            }
            std::mem::swap(&mut self.previous, &mut self.current);
        }
        let distance = self.previous[b.len()];
        (distance <= limit).then_some(distance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_are_offered_and_far_ones_not() {
        let fields = ["id", "uses", "needs", "with"];
        assert_eq!(closest("neds", &fields), Some("needs"));
        assert_eq!(closest("completely-else", &fields), None);
        assert_eq!(
            closest("vault.step-dwon", &["vault.step-down"]),
            Some("vault.step-down")
        );
    }

    /// The banded distance agrees with the full table wherever it answers.
    #[test]
    fn the_band_gives_the_full_distance() {
        fn full(a: &str, b: &str) -> usize {
            let b: Vec<char> = b.chars().collect();
            let mut previous: Vec<usize> = (0..=b.len()).collect();
            for (i, ca) in a.chars().enumerate() {
                let mut current = vec![i + 1];
                for (j, cb) in b.iter().enumerate() {
                    let cost = usize::from(ca != *cb);
                    current.push(
                        (previous[j] + cost)
                            .min(previous[j + 1] + 1)
                            .min(current[j] + 1),
                    );
                }
                previous = current;
            }
            previous[b.len()]
        }
        let words = [
            "",
            "a",
            "ab",
            "ba",
            "abc",
            "neds",
            "needs",
            "vault.step-down",
            "vault.stepdown",
            "k8s.nope-1",
            "k8s.backup",
            "ünï",
            "uni",
        ];
        let mut rows = Rows::default();
        for a in words {
            for b in words {
                let chars: Vec<char> = a.chars().collect();
                for limit in 0..5 {
                    let expected = Some(full(a, b)).filter(|&d| d <= limit);
                    assert_eq!(
                        rows.distance_within(&chars, b, limit),
                        expected,
                        "{a} {b} {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_budget_stops_searches_it_cannot_cover() {
        let names: Vec<String> = (0..1000).map(|i| format!("step-{i}")).collect();
        let mut suggester = Suggester {
            remaining: names.len() * 2,
        };
        let search = |s: &mut Suggester| s.closest("step-7x", names.iter().map(String::as_str));
        assert_eq!(search(&mut suggester), Some("step-7"));
        assert_eq!(search(&mut suggester), Some("step-7"));
        assert_eq!(search(&mut suggester), None, "the budget is spent");
    }
}
