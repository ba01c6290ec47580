//! The seal editor on a corpus of realistic Vault configurations (the Helm chart's default, with
//! comments, two listeners, awskms/transit/gcpckms/azurekeyvault seals, the seal first or last,
//! CRLF line endings, tabs), with golden results, and a property test: on generated
//! configurations every edit changes exactly the intended seal attributes and nothing else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use planc::edit::seal::{self, SealEdit, SealSelector};
use similar::{ChangeTag, TextDiff};
use workspace_tests::{expect_file, workspace_root};

/// What a configuration means: its other structures, and each seal block's label and attributes.
#[derive(Debug, PartialEq)]
struct Meaning {
    others: hcl::Body,
    seals: Vec<(String, BTreeMap<String, hcl::Expression>)>,
}

fn meaning(config: &str) -> Meaning {
    let body = hcl::parse(config).unwrap_or_else(|e| panic!("not HCL: {e}\n{config}"));
    let mut others = Vec::new();
    let mut seals = Vec::new();
    for structure in body.into_iter() {
        match structure {
            hcl::Structure::Block(block) if block.identifier.as_str() == "seal" => {
                let label = block
                    .labels
                    .first()
                    .map(|l| l.as_str().to_string())
                    .unwrap_or_default();
                let attributes = block
                    .body
                    .attributes()
                    .map(|a| (a.key.as_str().to_string(), a.expr.clone()))
                    .collect();
                seals.push((label, attributes));
            }
            other => others.push(other),
        }
    }
    Meaning {
        others: hcl::Body::from(others),
        seals,
    }
}

/// What a block added beside a block of the same type inherits from it: how it signs in, that is
/// every string or boolean attribute but where the key is, `name`, `disabled` and `priority`
/// (booleans are written as strings).
fn inherited(
    replaced_type: &str,
    replaced: &BTreeMap<String, hcl::Expression>,
    new_type: &str,
) -> BTreeMap<String, hcl::Expression> {
    use planc_schema::plan::TargetKind;
    if replaced_type != new_type {
        return BTreeMap::new();
    }
    let key: &[&str] = match new_type {
        "azurekeyvault" => seal::key_attributes(TargetKind::Azurekeyvault),
        "transit" => seal::key_attributes(TargetKind::Transit),
        "awskms" => seal::key_attributes(TargetKind::Awskms),
        "gcpckms" => seal::key_attributes(TargetKind::Gcpckms),
        _ => &[],
    };
    replaced
        .iter()
        .filter(|(name, _)| {
            !key.contains(&name.as_str())
                && !["name", "disabled", "priority"].contains(&name.as_str())
        })
        .filter_map(|(name, value)| match value {
            hcl::Expression::String(_) => Some((name.clone(), value.clone())),
            hcl::Expression::Bool(b) => Some((name.clone(), text(&b.to_string()))),
            _ => None,
        })
        .collect()
}

fn text(value: &str) -> hcl::Expression {
    hcl::Expression::String(value.to_string())
}

/// Line ranges (0-based, inclusive) of the seal blocks of a configuration.
fn seal_lines(config: &str) -> Vec<(usize, usize)> {
    use hcl::edit::Span as _;
    let body = hcl::edit::parser::parse_body(config).expect("HCL");
    body.get_blocks("seal")
        .filter_map(|b| b.span())
        .map(|span| {
            let start = config[..span.start].matches('\n').count();
            let end = config[..span.end].matches('\n').count();
            (start, end)
        })
        .collect()
}

/// Every line the edit added or removed lies in a seal block (or is a comment right above the
/// removed block); everything else is byte-identical.
fn assert_only_seal_lines_changed(before: &str, after: &str, name: &str) {
    let old_seals = seal_lines(before);
    let new_seals = seal_lines(after);
    let old_lines: Vec<&str> = before.split_inclusive('\n').collect();
    let within = |ranges: &[(usize, usize)], line: usize| {
        ranges.iter().any(|(s, e)| (*s..=*e).contains(&line))
    };
    let diff = TextDiff::from_lines(before, after);
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Equal => {}
            ChangeTag::Delete => {
                let index = change.old_index().expect("deleted lines have an index");
                let comment_above = old_lines[index].trim_start().starts_with('#')
                    || old_lines[index].trim_start().starts_with("//");
                assert!(
                    within(&old_seals, index) || comment_above,
                    "{name}: line {} outside the seal blocks was removed: {:?}",
                    index + 1,
                    change.value()
                );
            }
            ChangeTag::Insert => {
                let index = change.new_index().expect("inserted lines have an index");
                assert!(
                    within(&new_seals, index),
                    "{name}: line {} outside the seal blocks was added: {:?}",
                    index + 1,
                    change.value()
                );
            }
        }
    }
}

fn assert_line_endings_kept(before: &str, after: &str, name: &str) {
    if before.contains("\r\n") {
        let bare = after
            .match_indices('\n')
            .filter(|(i, _)| *i == 0 || &after[i - 1..*i] != "\r")
            .count();
        assert_eq!(
            bare, 0,
            "{name}: a CRLF configuration got bare LF line endings"
        );
    } else {
        assert!(
            !after.contains('\r'),
            "{name}: CR appeared in an LF configuration"
        );
    }
}

type Attributes = Vec<(String, String)>;

/// New key attributes for each seal type: (for pointing at another key, for the new block).
fn new_keys(seal_type: &str) -> (Attributes, Attributes) {
    let pairs = |items: &[(&str, &str)]| {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    match seal_type {
        "azurekeyvault" => (
            pairs(&[
                ("vault_name", "kv-vault-pointed"),
                ("key_name", "vault-unseal-pointed"),
            ]),
            pairs(&[
                ("tenant_id", "00000000-0000-0000-0000-000000000000"),
                ("vault_name", "kv-vault-new"),
                ("key_name", "vault-unseal-new"),
            ]),
        ),
        "transit" => (
            pairs(&[
                ("address", "https://kms-pointed.example.com:8200"),
                ("key_name", "pointed-unseal"),
            ]),
            pairs(&[
                ("address", "https://kms-new.example.com:8200"),
                ("token", "s.PLANTEDnewToken22222222222"),
                ("mount_path", "transit/"),
                ("key_name", "new-unseal"),
            ]),
        ),
        "awskms" => (
            pairs(&[("kms_key_id", "alias/vault-pointed")]),
            pairs(&[("region", "eu-west-1"), ("kms_key_id", "alias/vault-new")]),
        ),
        "gcpckms" => (
            pairs(&[("key_ring", "pointed-kr"), ("crypto_key", "pointed-key")]),
            pairs(&[
                ("project", "vault-new"),
                ("region", "global"),
                ("key_ring", "new-kr"),
                ("crypto_key", "new-key"),
            ]),
        ),
        other => panic!("no keys for {other}"),
    }
}

#[test]
fn the_corpus_edits_match_their_golden_files_and_touch_only_seal_blocks() {
    let folder = workspace_root().join("tests/cases/seal");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hcl"))
        .collect();
    files.sort();
    assert!(files.len() >= 7);
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let input = std::fs::read_to_string(&path).expect("readable");
        let original = meaning(&input);
        let (seal_type, original_attributes) = original.seals[0].clone();
        let selector = SealSelector {
            seal_type: seal_type.clone(),
            name: None,
        };
        let (point, new_block) = new_keys(&seal_type);

        // Chapter 6: point the block at another key.
        let pointed = seal::apply(
            &input,
            &SealEdit::PointAtKey {
                selector: selector.clone(),
                attributes: point.clone(),
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut expected = original_attributes.clone();
        for (k, v) in &point {
            expected.insert(k.clone(), text(v));
        }
        assert_eq!(
            meaning(&pointed),
            Meaning {
                others: original.others.clone(),
                seals: vec![(seal_type.clone(), expected.clone())]
            },
            "{name}"
        );

        // Chapter 7: disable it and add the new one.
        let migrating = seal::apply(
            &pointed,
            &SealEdit::DisableAndAdd {
                selector: selector.clone(),
                new_type: seal_type.clone(),
                new_name: Some("new".into()),
                attributes: new_block.clone(),
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut disabled = expected.clone();
        disabled.insert("disabled".into(), text("true"));
        let mut added = inherited(&seal_type, &expected, &seal_type);
        added.extend(new_block.iter().map(|(k, v)| (k.clone(), text(v))));
        added.insert("name".into(), text("new"));
        assert_eq!(
            meaning(&migrating),
            Meaning {
                others: original.others.clone(),
                seals: vec![
                    (seal_type.clone(), disabled),
                    (seal_type.clone(), added.clone())
                ]
            },
            "{name}"
        );

        // Chapter 10: remove the disabled block.
        let done = seal::apply(&migrating, &SealEdit::RemoveDisabled { selector: None })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            meaning(&done),
            Meaning {
                others: original.others.clone(),
                seals: vec![(seal_type.clone(), added)]
            },
            "{name}"
        );

        for (before, after) in [
            (&input, &pointed),
            (&pointed, &migrating),
            (&migrating, &done),
        ] {
            assert_only_seal_lines_changed(before, after, &name);
            assert_line_endings_kept(before, after, &name);
        }
        let golden = workspace_root().join("tests/golden/seal");
        expect_file(&golden.join(format!("{name}.1-point-at-key.hcl")), &pointed);
        expect_file(
            &golden.join(format!("{name}.2-disable-and-add.hcl")),
            &migrating,
        );
        expect_file(&golden.join(format!("{name}.3-remove-disabled.hcl")), &done);
    }
}

#[test]
fn edits_that_find_no_block_or_several_name_what_they_looked_for() {
    let config = "seal \"transit\" {\n  key_name = \"a\"\n}\n";
    let error = seal::apply(
        config,
        &SealEdit::PointAtKey {
            selector: SealSelector {
                seal_type: "azurekeyvault".into(),
                name: None,
            },
            attributes: vec![],
        },
    )
    .unwrap_err();
    assert_eq!(
        error.0,
        "no seal \"azurekeyvault\" found; the configuration has seal \"transit\""
    );
    let error = seal::apply(config, &SealEdit::RemoveDisabled { selector: None }).unwrap_err();
    assert_eq!(
        error.0,
        "no disabled seal block found; the configuration has seal \"transit\""
    );
    let two = "seal \"transit\" {\n  key_name = \"a\"\n}\nseal \"transit\" {\n  disabled = \"true\"\n  key_name = \"b\"\n}\n";
    let error = seal::apply(
        two,
        &SealEdit::PointAtKey {
            selector: SealSelector {
                seal_type: "transit".into(),
                name: None,
            },
            attributes: vec![],
        },
    )
    .unwrap_err();
    assert_eq!(
        error.0,
        "2 blocks match seal \"transit\"; add `name` to the selector to pick one"
    );
    let named = SealSelector {
        seal_type: "transit".into(),
        name: Some("kms-old".into()),
    };
    let error = seal::apply(
        two,
        &SealEdit::PointAtKey {
            selector: named,
            attributes: vec![],
        },
    )
    .unwrap_err();
    assert!(
        error
            .0
            .starts_with("no seal \"transit\" named \"kms-old\" found"),
        "{}",
        error.0
    );
}

#[test]
fn results_that_break_the_seal_rules_are_refused() {
    // A third block.
    let two = "seal \"transit\" {\n  disabled = \"true\"\n  key_name = \"a\"\n}\nseal \"transit\" {\n  key_name = \"b\"\n}\n";
    let error = seal::apply(
        two,
        &SealEdit::DisableAndAdd {
            selector: SealSelector {
                seal_type: "transit".into(),
                name: None,
            },
            new_type: "transit".into(),
            new_name: None,
            attributes: vec![],
        },
    )
    .unwrap_err();
    assert!(error.0.contains("2 blocks match"), "{}", error.0);
    let error = seal::validate(&format!(
        "{two}seal \"awskms\" {{\n  kms_key_id = \"x\"\n}}\n"
    ))
    .unwrap_err();
    assert_eq!(
        error.0,
        "the configuration would have 3 seal blocks; Vault accepts at most two"
    );
    let error = seal::validate(
        "seal \"a\" {\n  name = \"x\"\n}\nseal \"b\" {\n  name = \"x\"\n  disabled = true\n}\n",
    )
    .unwrap_err();
    assert_eq!(
        error.0,
        "both seal blocks are named \"x\"; give them distinct names"
    );
    let error = seal::validate("seal \"a\" {\n  disabled = \"true\"\n}\n").unwrap_err();
    assert_eq!(
        error.0,
        "the configuration would have 0 enabled seal blocks; Vault needs exactly one"
    );
    let one_line = "seal \"awskms\" { kms_key_id = \"x\" }\n";
    let error = seal::apply(
        one_line,
        &SealEdit::PointAtKey {
            selector: SealSelector {
                seal_type: "awskms".into(),
                name: None,
            },
            attributes: vec![("region".into(), "eu-west-1".into())],
        },
    )
    .unwrap_err();
    assert!(error.0.contains("written on one line"), "{}", error.0);
}

#[test]
fn sensitive_values_are_redacted_in_place() {
    let config = std::fs::read_to_string(
        workspace_root().join("tests/cases/seal/two-listeners-transit.hcl"),
    )
    .unwrap();
    let redacted = seal::redact(&config, |_| "<redacted>".into());
    assert!(!redacted.contains("s.PLANTEDtransitToken"));
    assert!(redacted.contains("token           = \"<redacted>\""));
    assert_eq!(redacted.lines().count(), config.lines().count());
}

/// A small deterministic generator (xorshift), so that failures reproduce.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One generated seal block: label, attributes, whether disabled.
struct GeneratedSeal {
    label: &'static str,
    attributes: Vec<(String, String)>,
    disabled: bool,
    name: Option<String>,
}

fn generate(random: &mut Random, with_disabled: bool) -> (String, Vec<GeneratedSeal>) {
    let indent = *random.pick(&["  ", "    ", "\t"]);
    let eol = *random.pick(&["\n", "\r\n"]);
    let aligned = random.below(2) == 0;
    let labels = ["azurekeyvault", "transit", "awskms", "gcpckms"];
    let label = *random.pick(&labels);
    let mut seals = vec![GeneratedSeal {
        label,
        attributes: vec![
            ("key_name".into(), format!("key-{}", random.below(1000))),
            (
                "region".into(),
                (*random.pick(&["global", "eu-west-1"])).to_string(),
            ),
        ],
        disabled: with_disabled,
        name: with_disabled.then(|| "old".to_string()),
    }];
    if with_disabled {
        seals.push(GeneratedSeal {
            label: labels[random.below(labels.len())],
            attributes: vec![("key_name".into(), "key-next".into())],
            disabled: false,
            name: Some("next".into()),
        });
    }
    let mut blocks: Vec<String> = vec![
        format!("ui = {}{eol}", random.pick(&["true", "false"])),
        format!(
            "listener \"tcp\" {{{eol}{indent}address = \"[::]:8200\"{eol}{indent}tls_disable = 1{eol}}}{eol}"
        ),
        format!(
            "storage \"raft\" {{{eol}{indent}path = \"/vault/data\"{eol}{indent}node_id = \"HOSTNAME\"{eol}}}{eol}"
        ),
        format!("service_registration \"kubernetes\" {{}}{eol}"),
        format!(
            "# a comment about telemetry{eol}telemetry {{{eol}{indent}disable_hostname = true{eol}}}{eol}"
        ),
    ];
    if random.below(2) == 0 {
        blocks.push(format!(
            "listener \"tcp\" {{{eol}{indent}address = \"127.0.0.1:8210\"{eol}}}{eol}"
        ));
    }
    for seal in &seals {
        let mut lines: Vec<(String, String)> = Vec::new();
        if let Some(name) = &seal.name {
            lines.push(("name".into(), name.clone()));
        }
        if seal.disabled {
            lines.push(("disabled".into(), "true".into()));
        }
        lines.extend(seal.attributes.iter().cloned());
        let width = if aligned {
            lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0)
        } else {
            0
        };
        let mut block = String::new();
        if random.below(3) == 0 {
            block.push_str(&format!("# the {} seal{eol}", seal.label));
        }
        block.push_str(&format!("seal \"{}\" {{{eol}", seal.label));
        if random.below(3) == 0 {
            block.push_str(&format!("{indent}# inside{eol}"));
        }
        for (key, value) in lines {
            block.push_str(&format!("{indent}{key:<width$} = \"{value}\"{eol}"));
        }
        block.push_str(&format!("}}{eol}"));
        let at = random.below(blocks.len() + 1);
        blocks.insert(at, block);
    }
    let mut config: String = blocks.concat();
    if random.below(4) == 0 {
        config.truncate(config.len() - eol.len());
    }
    (config, seals)
}

fn seal_meaning(seal: &GeneratedSeal) -> (String, BTreeMap<String, hcl::Expression>) {
    let mut attributes: BTreeMap<String, hcl::Expression> = seal
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    if let Some(name) = &seal.name {
        attributes.insert("name".into(), text(name));
    }
    if seal.disabled {
        attributes.insert("disabled".into(), text("true"));
    }
    (seal.label.to_string(), attributes)
}

#[test]
fn property_every_edit_changes_exactly_what_it_says() {
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    for case in 0..400 {
        let with_disabled = case % 3 == 2;
        let (config, seals) = generate(&mut random, with_disabled);
        let before = meaning(&config);
        let (edit, expected_seals) = if with_disabled {
            // Remove the disabled block.
            (
                SealEdit::RemoveDisabled { selector: None },
                vec![seal_meaning(&seals[1])],
            )
        } else if case % 3 == 0 {
            let attributes = vec![
                ("key_name".to_string(), format!("pointed-{case}")),
                ("project".to_string(), "p".to_string()),
            ];
            let mut expected = seal_meaning(&seals[0]);
            for (k, v) in &attributes {
                expected.1.insert(k.clone(), text(v));
            }
            (
                SealEdit::PointAtKey {
                    selector: SealSelector {
                        seal_type: seals[0].label.into(),
                        name: None,
                    },
                    attributes,
                },
                vec![expected],
            )
        } else {
            let attributes = vec![("key_name".to_string(), format!("new-{case}"))];
            let mut disabled = seal_meaning(&seals[0]);
            disabled.1.insert("disabled".into(), text("true"));
            let (replaced_type, replaced) = seal_meaning(&seals[0]);
            let mut added = inherited(&replaced_type, &replaced, "transit");
            added.extend(attributes.iter().map(|(k, v)| (k.clone(), text(v))));
            added.insert("name".into(), text("new"));
            (
                SealEdit::DisableAndAdd {
                    selector: SealSelector {
                        seal_type: seals[0].label.into(),
                        name: None,
                    },
                    new_type: "transit".into(),
                    new_name: Some("new".into()),
                    attributes,
                },
                vec![disabled, ("transit".to_string(), added)],
            )
        };
        let after =
            seal::apply(&config, &edit).unwrap_or_else(|e| panic!("case {case}: {e}\n{config}"));
        let result = meaning(&after);
        assert_eq!(
            result.others, before.others,
            "case {case}: something besides the seals changed\n{config}\n---\n{after}"
        );
        assert_eq!(
            result.seals, expected_seals,
            "case {case}\n{config}\n---\n{after}"
        );
        assert_only_seal_lines_changed(&config, &after, &format!("case {case}"));
        assert_line_endings_kept(&config, &after, &format!("case {case}"));
    }
}
