//! `kycgate check`, and the validation a reload runs before it swaps anything in: the whole
//! configuration (gateway file, `[routing]`, every adapter in the providers directory, the local
//! provider's `[settings]`, the models it needs), every problem reported at `file:line:column`
//! with a hint, like `nginx -t`.
//!
//! Why its own pass rather than the loaders' errors: the loaders stop at the first error and the
//! `config` crate drops spans. Here each file is parsed with spans (`toml::de::DeTable`), every
//! section and file is checked on its own, and semantic problems found on the loaded values
//! (`Config::problems`, `RoutingConfig::problems`) are mapped back to the key they came from.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::config::{self, Config};
use crate::providers::spec::{self, ProviderFile, ProviderSpec, SpecError};
use crate::providers::SubCallKind;
use crate::routing::config::Known;

/// One problem: where it is (file, and line and column when known), what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column.
    pub at: Option<(usize, usize)>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}

impl Problem {
    /// The problem on one line (`file:line:column: message (hint: …)`), for logs and JSON.
    pub fn one_line(&self) -> String {
        let mut line = self.to_string();
        if let Some((head, hint)) = line.split_once("\n    hint: ") {
            line = format!("{head} (hint: {hint})");
        }
        line
    }
}

/// Everything `check` found, and what it loaded (a reload swaps these in when there is no problem).
#[derive(Debug, Default)]
pub struct Report {
    /// Errors: start-up (or a reload) would refuse this configuration.
    pub problems: Vec<Problem>,
    /// Worth knowing, not fatal (a model to fetch, a vendor whose credentials are not set here).
    pub warnings: Vec<Problem>,
    /// The summary of a valid configuration, one line each.
    pub summary: Vec<String>,
    /// The effective configuration (file, then `KYCGATE__…` variables), when it loads.
    pub config: Option<Config>,
    /// Every adapter file that loaded, plus the embedded local one when the directory has none.
    pub providers: Vec<ProviderFile>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The name `check` gives the embedded defaults when no file is given.
const EMBEDDED: &str = "config/default.toml (embedded)";
/// Where the embedded local provider file is said to be.
const EMBEDDED_LOCAL: &str = "providers/local.toml (embedded)";

/// Checks the configuration `kycgate serve --config FILE` would run with. Never stops at the
/// first problem. Does not fetch models or call vendors.
pub fn run(config_file: Option<&Path>) -> Report {
    let mut report = Report::default();
    let doc = match config_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(Doc { path: path.to_path_buf(), text }),
            Err(e) => {
                report.problems.push(Problem {
                    file: path.to_path_buf(),
                    at: None,
                    message: format!("cannot read: {e}"),
                    hint: None,
                });
                return report;
            }
        },
        None => None,
    };
    let file_ok = doc.as_ref().is_none_or(|d| gateway_file(d, &mut report.problems));
    let gateway_name = doc.as_ref().map_or_else(|| PathBuf::from(EMBEDDED), |d| d.path.clone());
    if file_ok {
        match Config::load_unchecked(config_file) {
            Ok(cfg) => report.config = Some(cfg),
            // The file is fine on its own: what fails comes from the environment.
            Err(e) => report.problems.push(Problem {
                file: gateway_name.clone(),
                at: None,
                message: e.to_string(),
                hint: Some("check the KYCGATE__… environment variables".into()),
            }),
        }
    }
    if let Some(cfg) = &report.config {
        for p in cfg.problems() {
            let at = doc.as_ref().and_then(|d| d.locate(&p.key));
            let hint = p.hint.unwrap_or_else(|| "config/default.toml documents every key and its range".into());
            report.problems.push(Problem { file: gateway_name.clone(), at, message: format!("{}: {}", p.key, p.message), hint: Some(hint) });
        }
    }
    // The adapters are checked even when the gateway file is broken: every problem at once.
    let dir = report
        .config
        .as_ref()
        .map(|c| c.providers.dir.clone())
        .or_else(|| doc.as_ref().and_then(Doc::providers_dir))
        .unwrap_or_else(|| PathBuf::from("providers"));
    let known = adapters(&dir, &mut report);
    let Some(cfg) = report.config.clone() else {
        report.problems.sort_by(|a, b| (&a.file, a.at).cmp(&(&b.file, b.at)));
        return report;
    };

    let lookup = |name: &str| match known.get(name) {
        Some(k) => k.clone(),
        None => Known::Missing { known: known.keys().cloned().collect() },
    };
    for p in cfg.routing.problems(&lookup) {
        let at = doc.as_ref().and_then(|d| d.locate(&p.key));
        let hint = p.hint.unwrap_or_else(|| "docs/ROUTING.md documents chains, split, rules, hedge and consensus".into());
        report.problems.push(Problem { file: gateway_name.clone(), at, message: format!("{}: {}", p.key, p.message), hint: Some(hint) });
    }
    let routed: Vec<&str> = cfg.routing.provider_names().collect();
    for f in &report.providers {
        if let ProviderSpec::Http(_) = &f.spec {
            if routed.contains(&f.name.as_str()) {
                if let Ok(p) = crate::providers::http::HttpProvider::from_file(f) {
                    if let Some(why) = p.spec().unavailable_reason() {
                        report.warnings.push(Problem {
                            file: f.path.clone(),
                            at: None,
                            message: format!("provider `{}` is routed but unavailable here: {why}", f.name),
                            hint: Some("set its credentials (docs/ADAPTERS.md) or it is skipped on every task".into()),
                        });
                    }
                }
            }
        }
    }
    let mut summary = vec![
        format!("gateway file: {}", gateway_name.display()),
        format!("providers: {} adapter file(s) from {}", report.providers.len(), dir.display()),
    ];
    for kind in SubCallKind::ALL {
        let chain: Vec<&str> = cfg.routing.route(kind).chain.iter().map(|e| e.provider.as_str()).collect();
        summary.push(format!("routing: {kind} -> {}", chain.join(", ")));
    }
    models(&cfg, &routed, &mut report);
    summary.append(&mut report.summary);
    report.summary = summary;
    report.problems.sort_by(|a, b| (&a.file, a.at).cmp(&(&b.file, b.at)));
    report
}

/// A TOML file's text, for spans.
struct Doc {
    path: PathBuf,
    text: String,
}

impl Doc {
    fn problem(&self, span: Option<Range<usize>>, message: impl Into<String>, hint: Option<String>) -> Problem {
        Problem { file: self.path.clone(), at: span.map(|s| line_col(&self.text, s.start)), message: message.into(), hint }
    }

    /// Line and column of a dotted key (`routing.liveness.chain.0.provider`; numbers index
    /// arrays), or of its deepest part present in the file. `None`: the key is not in the file
    /// (a default or an environment variable).
    fn locate(&self, key: &str) -> Option<(usize, usize)> {
        let root = DeTable::parse(&self.text).ok()?;
        let mut segments = key.split('.');
        let mut current = root.get_ref().get(segments.next()?)?;
        let mut span = current.span();
        for seg in segments {
            let next = match (current.get_ref(), seg.parse::<usize>()) {
                (DeValue::Array(items), Ok(i)) => items.get(i),
                (DeValue::Table(t), _) => t.get(seg),
                _ => None,
            };
            match next {
                Some(v) => {
                    current = v;
                    span = v.span();
                }
                None => break,
            }
        }
        Some(line_col(&self.text, span.start))
    }

    /// `providers.dir` as the file writes it, when the file as a whole does not load.
    fn providers_dir(&self) -> Option<PathBuf> {
        let root = DeTable::parse(&self.text).ok()?;
        let dir = root.get_ref().get("providers")?.get_ref().get("dir")?;
        dir.get_ref().as_str().map(PathBuf::from)
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The gateway file on its own: every syntax error, then each section against its type (one
/// problem per section at most: serde stops at a section's first error). True when clean.
fn gateway_file(doc: &Doc, problems: &mut Vec<Problem>) -> bool {
    let (root, errors) = DeTable::parse_recoverable(&doc.text);
    if !errors.is_empty() {
        for e in errors {
            let hint = "check the quotes, brackets and commas here; a table header is `[section]`";
            problems.push(doc.problem(e.span(), format!("TOML syntax: {}", e.message().trim()), Some(hint.into())));
        }
        return false;
    }
    let mut merged = root.into_inner();
    match DeTable::parse(config::DEFAULT_TOML) {
        Ok(defaults) => merge_missing(&mut merged, defaults.get_ref()),
        Err(e) => {
            problems.push(doc.problem(None, format!("embedded defaults do not parse: {e}"), None));
            return false;
        }
    }
    let before = problems.len();
    for (key, value) in merged.iter() {
        let name: &str = key.get_ref();
        let result = match name {
            "server" => section::<config::ServerConfig>(value),
            "images" => section::<config::ImageLimits>(value),
            "store" => section::<config::StoreConfig>(value),
            "worker" => section::<config::WorkerConfig>(value),
            "auth" => section::<config::AuthConfig>(value),
            "providers" => section::<config::ProvidersConfig>(value),
            "models" => section::<config::ModelsConfig>(value),
            "routing" => section::<crate::routing::config::RoutingConfig>(value),
            "telemetry" => section::<config::TelemetryConfig>(value),
            "webhooks" => section::<config::WebhookConfig>(value),
            "local" => section::<config::LocalConfig>(value),
            _ => {
                problems.push(doc.problem(
                    Some(key.span()),
                    format!("unknown section `{name}`"),
                    Some("sections: server, images, store, worker, auth, providers, models, routing, telemetry, webhooks, local".into()),
                ));
                continue;
            }
        };
        if let Err(e) = result {
            let hint = hint_for(e.message()).unwrap_or_else(|| "config/default.toml documents every key".into());
            problems.push(doc.problem(e.span(), format!("[{name}] {}", e.message().trim()), Some(hint)));
        }
    }
    problems.len() == before
}

/// Deserializes one section from its spanned value, so errors keep the file's spans.
fn section<T: DeserializeOwned>(value: &Spanned<DeValue<'_>>) -> Result<(), toml::de::Error> {
    T::deserialize(ValueDeserializer::from(value.clone())).map(drop)
}

/// Adds the embedded defaults' keys the file does not set (tables merged key by key, as the
/// `config` crate merges them), so a section is checked as start-up would see it.
fn merge_missing<'i>(file: &mut DeTable<'i>, defaults: &DeTable<'i>) {
    for (key, value) in defaults.iter() {
        let name: &str = key.get_ref();
        match file.get_mut(name) {
            None => {
                file.insert(key.clone(), value.clone());
            }
            Some(existing) => {
                if let (DeValue::Table(mine), DeValue::Table(theirs)) = (existing.get_mut(), value.get_ref()) {
                    merge_missing(mine, theirs);
                }
            }
        }
    }
}

/// What a serde message most likely means.
fn hint_for(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("the key is misspelt or misplaced; config/default.toml lists every key".into())
    } else if message.starts_with("unknown variant") {
        Some("the value must be one of those listed".into())
    } else if message.starts_with("invalid value") {
        Some("the value is out of range or malformed for this key".into())
    } else if message.starts_with("invalid type") {
        Some("the value has the wrong type (a number, a string, a table, …)".into())
    } else {
        None
    }
}

/// Loads every adapter in `dir` (all of them, not stopping at a broken one), checks the HTTP
/// ones' templates and auth and the local one's `[settings]`. Returns what routing may name.
fn adapters(dir: &Path, report: &mut Report) -> BTreeMap<String, Known> {
    let mut known = BTreeMap::new();
    let mut paths = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                    paths.push(path);
                }
            }
        }
        Err(e) => report.warnings.push(Problem {
            file: dir.to_path_buf(),
            at: None,
            message: format!("providers directory not readable ({e}); only the embedded local provider exists"),
            hint: Some("set providers.dir, or run from the directory that holds providers/".into()),
        }),
    }
    paths.sort();
    for path in paths {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let file = match spec::load_file(&path) {
            Ok(f) => f,
            Err(e) => {
                report.problems.push(spec_problem(e, &path));
                known.insert(name, Known::Broken);
                continue;
            }
        };
        let serves = match &file.spec {
            ProviderSpec::Http(_) => match crate::providers::http::HttpProvider::from_file(&file) {
                Ok(p) => Some(p.spec().serves().collect::<Vec<_>>()),
                Err(e) => {
                    report.problems.push(spec_problem(e, &path));
                    None
                }
            },
            ProviderSpec::Local(local) => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let doc = Doc { path: path.clone(), text };
                local_settings(&doc, &mut report.problems).then(|| local.serves.clone())
            }
        };
        known.insert(file.name.clone(), serves.map_or(Known::Broken, Known::Serves));
        report.providers.push(file);
    }
    if !known.contains_key("local") {
        let doc = Doc { path: PathBuf::from(EMBEDDED_LOCAL), text: crate::local::LOCAL_PROVIDER_TOML.to_string() };
        match spec::parse_spec(&doc.text) {
            Ok(spec) => {
                if let ProviderSpec::Local(local) = &spec {
                    if local_settings(&doc, &mut report.problems) {
                        known.insert("local".into(), Known::Serves(local.serves.clone()));
                    }
                }
                report.providers.push(ProviderFile { name: "local".into(), path: doc.path.clone(), spec });
            }
            Err(e) => report.problems.push(doc.problem(e.span(), e.message().to_string(), None)),
        }
    }
    known
}

/// A provider file's load error as a problem (its own `file:line:column` when it has one).
fn spec_problem(e: SpecError, path: &Path) -> Problem {
    match e {
        SpecError::Parse { path, line_col, message, hint } => Problem {
            file: path,
            at: line_col,
            message,
            hint: Some(hint.map_or_else(|| "docs/ADAPTERS.md describes every key of an adapter".into(), |h| h.to_string())),
        },
        SpecError::Invalid { path, message } => Problem {
            file: path,
            at: None,
            message,
            hint: Some("docs/ADAPTERS.md describes the adapter language; `kycgate providers test NAME` replays one".into()),
        },
        other => Problem { file: path.to_path_buf(), at: None, message: other.to_string(), hint: None },
    }
}

/// The local provider's `[settings]` against their type, with spans. True when valid.
fn local_settings(doc: &Doc, problems: &mut Vec<Problem>) -> bool {
    let Ok(root) = DeTable::parse(&doc.text) else { return true };
    let Some(settings) = root.get_ref().get("settings") else { return true };
    match <crate::local::LocalSettings as serde::Deserialize>::deserialize(ValueDeserializer::from(settings.clone())) {
        Ok(_) => true,
        Err(e) => {
            let hint = hint_for(e.message())
                .unwrap_or_else(|| "providers/local.toml lists the settings; docs/EVAL.md explains them".into());
            problems.push(doc.problem(e.span(), format!("[settings] {}", e.message().trim()), Some(hint)));
            false
        }
    }
}

/// The models the routed local provider needs: present, to be fetched, or missing.
fn models(cfg: &Config, routed: &[&str], report: &mut Report) {
    let local = report.providers.iter().find_map(|f| match &f.spec {
        ProviderSpec::Local(l) if routed.contains(&f.name.as_str()) => Some(l.clone()),
        _ => None,
    });
    let Some(local) = local else { return };
    let Ok(settings) = crate::local::LocalSettings::from_spec(&local) else { return };
    let store = match crate::local::model_store(&cfg.models) {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(Problem {
                file: PathBuf::from("models.toml"),
                at: None,
                message: format!("model manifest: {e}"),
                hint: Some("KYCGATE_MODELS_MANIFEST names another manifest; unset it to use the embedded one".into()),
            });
            return;
        }
    };
    let mut needed = vec![crate::local::DETECTOR_MODEL, settings.embedder_model_name()];
    needed.extend(settings.liveness_model_names());
    let (mut ready, mut fetch, mut missing) = (0, 0, 0);
    for name in needed {
        match store.resolve(name) {
            Ok(_) => ready += 1,
            Err(_) => {
                let sources: Vec<String> = store
                    .manifest
                    .get(name)
                    .map(|m| m.sources.iter().filter(|s| !matches!(s, kycgate_models::Source::Dir | kycgate_models::Source::Cache)).map(ToString::to_string).collect())
                    .unwrap_or_default();
                let file = cfg.models.model_dir().unwrap_or_else(|| store.cache_dir.clone());
                if cfg.models.fetch && !sources.is_empty() {
                    fetch += 1;
                    report.warnings.push(Problem {
                        file,
                        at: None,
                        message: format!("model `{name}` is not present; start-up will fetch it from: {}", sources.join(", ")),
                        hint: Some("run `kycgate models fetch` ahead of time so start-up does not wait on it".into()),
                    });
                } else {
                    missing += 1;
                    report.warnings.push(Problem {
                        file,
                        at: None,
                        message: format!("model `{name}` is missing and will not be fetched: the checks needing it answer MODEL_UNAVAILABLE"),
                        hint: Some("run `kycgate models fetch`, or point KYCGATE_MODEL_DIR at the models".into()),
                    });
                }
            }
        }
    }
    report.summary.push(format!("models: {ready} ready, {fetch} to fetch at start-up, {missing} missing"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_located_in_arrays_and_tables() {
        let doc = Doc {
            path: "g.toml".into(),
            text: "[server]\nlisten = \"x\"\n\n[routing.liveness]\nchain = [\n  { provider = \"a\" },\n  { provider = \"b\" },\n]\n".into(),
        };
        assert_eq!(doc.locate("server.listen"), Some((2, 10)));
        assert_eq!(doc.locate("routing.liveness.chain.1.provider"), Some((7, 16)));
        // Absent below a present table: the table's position.
        assert_eq!(doc.locate("routing.liveness.split").map(|(l, _)| l), Some(4));
        assert_eq!(doc.locate("worker.concurrency"), None);
    }

    #[test]
    fn every_section_error_is_reported() {
        let doc = Doc { path: "g.toml".into(), text: "[server]\nlisten = 5\n[worker]\nconcurency = 2\n[nope]\n".into() };
        let mut problems = Vec::new();
        assert!(!gateway_file(&doc, &mut problems));
        let lines: Vec<_> = problems.iter().map(|p| p.at.map(|a| a.0)).collect();
        assert_eq!(lines, [Some(5), Some(2), Some(4)], "{problems:#?}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let doc = Doc { path: "g.toml".into(), text: "[server\nlisten = \"x\"\n".into() };
        let mut problems = Vec::new();
        assert!(!gateway_file(&doc, &mut problems));
        assert_eq!(problems[0].at.map(|a| a.0), Some(1), "{problems:#?}");
    }
}
