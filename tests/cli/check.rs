//! `kycgate check` on real files, one test per kind of problem: the exit code, and a message
//! that names the file and the line (`file:line:column: …`) with a hint. Start-up refuses the
//! same things instead of falling back to defaults.

use std::path::{Path, PathBuf};

use crate::support::repo;
use crate::{kycgate, stderr, stdout};

/// A gateway file and a providers directory (with the repository's local.toml) in a temp dir.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("providers")).expect("providers dir");
        std::fs::copy(repo().join("providers/local.toml"), dir.path().join("providers/local.toml")).expect("local.toml");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `gateway.toml`: `[providers]` pointing at this setup's directory, then `body`.
    /// Returns the line number `body` starts on.
    fn gateway(&self, body: &str) -> usize {
        let head = format!("[providers]\ndir = \"{}\"\n\n", self.path().join("providers").display());
        std::fs::write(self.path().join("gateway.toml"), format!("{head}{body}")).expect("write gateway.toml");
        head.lines().count() + 1
    }

    fn provider(&self, name: &str, text: &str) {
        std::fs::write(self.path().join("providers").join(format!("{name}.toml")), text).expect("write adapter");
    }

    fn check(&self) -> (bool, String, String) {
        let out = kycgate(self.path(), &["check", "--config", "gateway.toml"]);
        (out.status.success(), stdout(&out), stderr(&out))
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }
}

/// Asserts a failed check whose output has `file:line:` followed (on that line) by `words`, and
/// a hint.
fn assert_problem(setup: &Setup, file: &str, line: usize, words: &str) {
    let (ok, out, err) = setup.check();
    assert!(!ok, "check passed:\n{out}\n{err}");
    let at = format!("{}:{line}:", file_label(setup, file));
    let lines: Vec<&str> = err.lines().collect();
    let found = lines.iter().position(|l| l.starts_with(&at) && l.contains(words));
    let Some(i) = found else { panic!("no `{at}… {words}` line in:\n{err}") };
    // Every problem is followed by its hint.
    assert!(lines.get(i + 1).is_some_and(|h| h.starts_with("    hint: ")), "no hint after the problem in:\n{err}");
}

fn file_label(setup: &Setup, file: &str) -> String {
    if file == "gateway.toml" {
        // `--config gateway.toml` is relative: the check names it as given.
        file.to_string()
    } else {
        setup.file(file).display().to_string()
    }
}

#[test]
fn a_valid_configuration_passes_with_a_summary() {
    let s = Setup::new();
    s.gateway("[server]\nlisten = \"127.0.0.1:0\"\n");
    let (ok, out, err) = s.check();
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("configuration OK"), "{out}");
    assert!(out.contains("routing: liveness -> local"), "{out}");
    assert!(out.contains("models: "), "{out}");
}

#[test]
fn bad_toml_syntax() {
    let s = Setup::new();
    let start = s.gateway("[server]\nlisten = \"127.0.0.1:0\n");
    let (ok, _, err) = s.check();
    assert!(!ok);
    assert!(err.lines().any(|l| l.starts_with(&format!("gateway.toml:{}:", start + 1)) && l.contains("TOML syntax")), "{err}");
}

#[test]
fn unknown_key() {
    let s = Setup::new();
    let start = s.gateway("[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 8080\n");
    assert_problem(&s, "gateway.toml", start + 2, "unknown field `listen_port`");
}

#[test]
fn unknown_provider_in_a_chain() {
    let s = Setup::new();
    let start = s.gateway("[routing.liveness]\nchain = [\n  { provider = \"local\" },\n  { provider = \"nope\" },\n]\n");
    assert_problem(&s, "gateway.toml", start + 3, "unknown provider `nope`");
    let (_, _, err) = s.check();
    assert!(err.contains("known providers: local"), "{err}");
}

#[test]
fn provider_that_does_not_serve_the_sub_call() {
    let s = Setup::new();
    // An OCR-only vendor in the liveness chain.
    std::fs::copy(repo().join("providers/mindee_passport.toml"), s.file("providers/mindee_passport.toml")).expect("copy");
    let start = s.gateway("[routing.liveness]\nchain = [{ provider = \"mindee_passport\" }]\n");
    assert_problem(&s, "gateway.toml", start + 1, "does not serve liveness");
}

#[test]
fn bad_weight() {
    let s = Setup::new();
    let start = s.gateway("[routing.face_compare]\nchain = [{ provider = \"local\" }]\nsplit = [{ provider = \"local\", weight = -3 }]\n");
    assert_problem(&s, "gateway.toml", start + 2, "invalid value");
    // All-zero weights parse but cannot split anything.
    let start = s.gateway("[routing.face_compare]\nchain = [{ provider = \"local\" }]\nsplit = [{ provider = \"local\", weight = 0 }]\n");
    assert_problem(&s, "gateway.toml", start + 2, "split weights are all zero");
}

#[test]
fn unknown_rule_fact() {
    let s = Setup::new();
    let start = s.gateway(
        "[routing.document_ocr]\nchain = [{ provider = \"local\" }]\nrules = [\n  { when = { planet = [\"mars\"] }, order = [\"local\"] },\n]\n",
    );
    assert_problem(&s, "gateway.toml", start + 3, "planet");
}

#[test]
fn bad_adapter_file() {
    let s = Setup::new();
    s.gateway("");
    s.provider("broken", "kind = \"http\"\nbase_url = \"http://127.0.0.1:9\"\nbogus = 1\n[endpoints]\n");
    assert_problem(&s, "providers/broken.toml", 3, "unknown field `bogus`");
}

#[test]
fn bad_local_setting() {
    let s = Setup::new();
    s.gateway("");
    s.provider("local", "kind = \"local\"\nserves = [\"liveness\", \"face_compare\", \"document_ocr\"]\n\n[settings]\nliveness_model = \"magic\"\n");
    assert_problem(&s, "providers/local.toml", 5, "unknown variant `magic`");
    s.provider("local", "kind = \"local\"\nserves = [\"liveness\"]\n\n[settings]\nmin_face_pix = 40\n");
    assert_problem(&s, "providers/local.toml", 5, "unknown field `min_face_pix`");
}

#[test]
fn unknown_log_format() {
    let s = Setup::new();
    let start = s.gateway("[telemetry]\nlog_format = \"xml\"\n");
    assert_problem(&s, "gateway.toml", start + 1, "unknown log format \"xml\"");
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let s = Setup::new();
    let start = s.gateway(
        "[worker]\nconcurency = 2\n\n[telemetry]\nlog_format = \"xml\"\n\n[routing.liveness]\nchain = [{ provider = \"nope\" }]\n",
    );
    s.provider("broken", "kind = \"http\"\nbase_url = \"http://127.0.0.1:9\"\nbogus = 1\n[endpoints]\n");
    let (ok, _, err) = s.check();
    assert!(!ok);
    // The file's shape errors stop the semantic checks of that file, never the adapters'.
    assert!(err.contains(&format!("gateway.toml:{}:", start + 1)), "{err}");
    assert!(err.contains(&format!("{}:3:", s.file("providers/broken.toml").display())), "{err}");
    // Fixed shape: now the semantic problems, all of them.
    let start = s.gateway("[telemetry]\nlog_format = \"xml\"\n\n[routing.liveness]\nchain = [{ provider = \"nope\" }]\n");
    let (_, _, err) = s.check();
    assert!(err.contains(&format!("gateway.toml:{}:", start + 1)), "{err}");
    assert!(err.contains(&format!("gateway.toml:{}:", start + 4)), "{err}");
    assert!(err.contains("3 problem(s)"), "{err}");
}

#[test]
fn start_up_refuses_what_check_refuses() {
    let s = Setup::new();
    s.gateway("[server]\nlisten = \"127.0.0.1:0\"\n[telemetry]\nlog_format = \"xml\"\n");
    let out = kycgate(s.path(), &["serve", "--config", "gateway.toml", "--api-key", "k"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("telemetry.log_format"), "{}", stderr(&out));

    s.gateway("[server]\nlisten = \"127.0.0.1:0\"\n");
    s.provider("local", "kind = \"local\"\nserves = [\"liveness\"]\n\n[settings]\nliveness_model = \"magic\"\n");
    let out = kycgate(s.path(), &["serve", "--config", "gateway.toml", "--api-key", "k"]);
    assert!(!out.status.success(), "started with an invalid liveness_model");
    let err = stderr(&out);
    assert!(err.contains("local") && err.contains("magic"), "{err}");
}
