//! `deploy/` (issue 14, point 4): the systemd unit, the environment file and the compose file
//! parse, carry the hardening docs/deploy.md promises, and name only settings that exist, i.e.
//! that `config/default.toml` documents (each key's environment names head its comment). No
//! YAML parser is a dependency, so the compose file is checked line by line: two-space
//! indentation, `key: value` or `- item`, no tabs, and the structure we rely on.
use std::collections::{BTreeMap, BTreeSet};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The environment names `config/default.toml` documents: every comment that starts with
/// `# NAME[, NAME…]:`.
fn documented() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in read("config/default.toml").lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let Some((head, _)) = rest.split_once(':') else {
            continue;
        };
        let parts: Vec<&str> = head.split(", ").collect();
        if parts.iter().all(|p| is_env_name(p)) {
            names.extend(parts.iter().map(|p| p.to_string()));
        }
    }
    assert!(names.contains("DATABASE_URL") && names.contains("RELAY365_API_KEY"));
    names
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Names that are relay365 settings (not PostgreSQL's or compose's own variables).
fn is_setting(name: &str) -> bool {
    !name.starts_with("POSTGRES_")
}

fn assert_documented(file: &str, names: &BTreeSet<String>) {
    let known = documented();
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| is_setting(n) && !known.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "{file} names unknown settings: {unknown:?}"
    );
}

/// A systemd unit: `[Section]` headers, `Key=Value` lines, comments, blank lines.
fn parse_unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.ends_with('\\'), "line {}: no continuations", i + 1);
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_string());
            sections.entry(name.to_string()).or_default();
            continue;
        }
        let section = current
            .clone()
            .unwrap_or_else(|| panic!("line {}: a setting before any section", i + 1));
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not Key=Value: {line}", i + 1));
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()),
            "line {}: bad key {key:?}",
            i + 1
        );
        sections
            .get_mut(&section)
            .unwrap()
            .push((key.to_string(), value.to_string()));
    }
    sections
}

#[test]
fn the_systemd_unit_parses_is_hardened_and_names_only_known_settings() {
    let unit = parse_unit(&read("deploy/relay365.service"));
    assert_eq!(
        unit.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Install", "Service", "Unit"]
    );
    let service = &unit["Service"];
    let get = |k: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, want) in [
        ("User", "relay365"),
        ("ProtectSystem", "strict"),
        ("StateDirectory", "relay365"),
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestartPreventExitStatus", "2"),
        ("ExecStart", "/usr/local/bin/relay365 serve"),
    ] {
        assert_eq!(get(key), [want], "{key}");
    }
    assert_eq!(get("CapabilityBoundingSet"), [""], "no capabilities");
    assert_eq!(get("EnvironmentFile"), ["/etc/relay365/relay365.env"]);
    // Only settings that exist; and no secret in the unit itself.
    let mut names = BTreeSet::new();
    for value in get("Environment") {
        for pair in value.split_whitespace() {
            let (name, _) = pair.split_once('=').expect("Environment=NAME=value");
            names.insert(name.trim_matches('"').to_string());
        }
    }
    assert!(names.contains("DATABASE_URL"));
    for secret in [
        "RELAY365_API_KEY",
        "SERVICE_SECRET",
        "RELAY365_N8N_WEBHOOK_SECRET",
    ] {
        assert!(
            !names.contains(secret),
            "{secret} belongs in the environment file"
        );
    }
    assert_documented("deploy/relay365.service", &names);
    assert_eq!(
        unit["Install"],
        [("WantedBy".into(), "multi-user.target".into())]
    );
}

#[test]
fn the_environment_file_names_only_known_settings() {
    let mut names = BTreeSet::new();
    for (i, line) in read("deploy/relay365.env.example").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // Commented-out settings count too: they are there to be uncommented.
        let (setting, commented) = match line.strip_prefix('#') {
            Some(rest) => (rest.trim_start(), true),
            None => (line, false),
        };
        match setting.split_once('=') {
            Some((name, _)) if is_env_name(name) => {
                names.insert(name.to_string());
            }
            _ if commented => {} // prose
            _ => panic!("line {}: not NAME=value: {line}", i + 1),
        }
    }
    for want in ["RELAY365_PUBLIC_URL", "RELAY365_API_KEY", "DATABASE_URL"] {
        assert!(names.contains(want), "{want}");
    }
    assert_documented("deploy/relay365.env.example", &names);
}

/// One line of the compose file: its indentation and content.
fn compose_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        assert!(!raw.contains('\t'), "line {}: a tab", i + 1);
        let content = raw.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = raw.len() - content.len();
        assert_eq!(indent % 2, 0, "line {}: odd indentation", i + 1);
        assert!(
            content.starts_with("- ") || content.contains(':'),
            "line {}: neither `key: value` nor `- item`: {content}",
            i + 1
        );
        let quotes = content.matches('"').count();
        assert_eq!(quotes % 2, 0, "line {}: unbalanced quotes", i + 1);
        out.push((indent, content.to_string()));
    }
    out
}

/// The lines nested under the first `key:` at `indent` inside `lines`.
fn block<'a>(lines: &'a [(usize, String)], indent: usize, key: &str) -> &'a [(usize, String)] {
    let start = lines
        .iter()
        .position(|(i, c)| *i == indent && c == &format!("{key}:"))
        .unwrap_or_else(|| panic!("no `{key}:` at indentation {indent}"));
    let end = lines[start + 1..]
        .iter()
        .position(|(i, _)| *i <= indent)
        .map_or(lines.len(), |p| start + 1 + p);
    &lines[start + 1..end]
}

#[test]
fn the_compose_file_parses_runs_on_postgres_and_names_only_known_settings() {
    let lines = compose_lines(&read("deploy/compose.yaml"));
    let top: Vec<&str> = lines
        .iter()
        .filter(|(i, _)| *i == 0)
        .map(|(_, c)| c.as_str())
        .collect();
    assert_eq!(top, ["name: relay365", "services:", "volumes:"]);
    let services = block(&lines, 0, "services");
    let names: Vec<&str> = services
        .iter()
        .filter(|(i, _)| *i == 2)
        .map(|(_, c)| c.as_str())
        .collect();
    assert_eq!(names, ["postgres:", "relay365:"]);
    let pg = block(services, 2, "postgres");
    assert!(pg.iter().any(|(_, c)| c.starts_with("image: postgres:")));
    let app = block(services, 2, "relay365");
    let has = |line: &str| app.iter().any(|(_, c)| c == line);
    assert!(has("dockerfile: deploy/Dockerfile"));
    assert!(has("condition: service_healthy"), "waits for PostgreSQL");
    assert!(has("read_only: true") && has("- ALL") && has("- no-new-privileges:true"));
    let env = block(app, 4, "environment");
    let mut settings = BTreeSet::new();
    for (indent, c) in env {
        assert_eq!(*indent, 6, "environment is a flat map: {c}");
        let (name, value) = c.split_once(": ").expect("NAME: value");
        assert!(is_env_name(name), "{name}");
        settings.insert(name.to_string());
        if name == "DATABASE_URL" {
            assert!(value.starts_with("postgres://"), "{value}");
        }
        if ["RELAY365_API_KEY", "SERVICE_SECRET"].contains(&name) {
            assert!(
                value.starts_with("${"),
                "{name} comes from .env, not the file"
            );
        }
    }
    for want in [
        "DATABASE_URL",
        "RELAY365_LISTEN",
        "RELAY365_PUBLIC_URL",
        "RELAY365_API_KEY",
    ] {
        assert!(settings.contains(want), "{want}");
    }
    assert_documented("deploy/compose.yaml", &settings);
}

#[test]
fn the_dockerfile_is_multi_stage_and_runs_as_a_user() {
    let text = read("deploy/Dockerfile");
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage");
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    let mut names = BTreeSet::new();
    let mut continued = false;
    for line in text.lines() {
        let body = match line.strip_prefix("ENV ") {
            Some(b) => b,
            None if continued => line.trim(),
            None => continue,
        };
        continued = body.ends_with('\\');
        for pair in body.trim_end_matches('\\').split_whitespace() {
            if let Some((name, _)) = pair.split_once('=') {
                names.insert(name.to_string());
            }
        }
    }
    assert!(names.contains("RELAY365_LISTEN"));
    assert_documented("deploy/Dockerfile", &names);
}
