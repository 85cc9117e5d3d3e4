//! The docs stay true to the code where a test can tell: docs/configuration.md lists every
//! setting `config/default.toml` documents (and no other), every `RELAY365_…` name in the
//! README and docs/ is one of them, and every local link of the README and docs/ leads to a
//! file that exists.
use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The README and every page in docs/, as (path, text).
fn pages() -> Vec<(String, String)> {
    let mut pages = vec![("README.md".to_string(), read("README.md"))];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    for name in names {
        let path = format!("docs/{name}");
        pages.push((path.clone(), read(&path)));
    }
    pages
}

/// The environment names `config/default.toml` documents: each key's comment starts with
/// `# NAME[, NAME…]:`.
fn documented() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in read("config/default.toml").lines() {
        let Some((head, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let parts: Vec<&str> = head.split(", ").collect();
        if parts.iter().all(|p| is_env_name(p)) {
            names.extend(parts.iter().map(|p| p.to_string()));
        }
    }
    names
}

fn is_env_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every word of `text` that starts with `prefix` and reads as an environment name.
fn env_words<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(prefix) && is_env_name(w))
        .collect()
}

#[test]
fn the_configuration_page_lists_every_setting_and_no_other() {
    let page = read("docs/configuration.md");
    let mut listed = BTreeSet::new();
    for row in page.lines().filter(|l| l.starts_with("| `")) {
        // | `key` | `ENV`, `ENV` | default | meaning |
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if let Some(envs) = cells.get(2) {
            for name in envs.split(", ") {
                let name = name.trim_matches('`');
                if is_env_name(name) {
                    listed.insert(name.to_string());
                }
            }
        }
    }
    assert_eq!(listed, documented());
}

#[test]
fn every_setting_the_docs_name_exists() {
    let known = documented();
    for (path, text) in pages() {
        for name in env_words(&text, "RELAY365_") {
            // n8n's own variable for the signing secret, set in n8n's environment.
            if path == "docs/n8n.md" && name == "RELAY365_WEBHOOK_SECRET" {
                continue;
            }
            assert!(known.contains(name), "{path} names {name}, not a setting");
        }
    }
}

#[test]
fn every_local_link_leads_to_a_file() {
    for (path, text) in pages() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(&path)
            .parent()
            .unwrap()
            .to_path_buf();
        for (at, _) in text.match_indices("](") {
            let target: String = text[at + 2..].chars().take_while(|c| *c != ')').collect();
            let target = target.split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            assert!(
                base.join(target).exists(),
                "{path} links to {target}, which does not exist"
            );
        }
    }
}

#[test]
fn the_readme_stays_a_front_door() {
    let readme = read("README.md");
    assert!(
        readme.len() < 12 * 1024,
        "README.md is {} bytes",
        readme.len()
    );
    // The test command is the one CI runs.
    let ci = read(".ci/run");
    assert!(ci.contains("\ncargo test --workspace\n"));
    assert!(readme.contains(
        "TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test --workspace"
    ));
}
