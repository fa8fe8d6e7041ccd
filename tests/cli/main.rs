//! The `kycgate` binary as an operator drives it: `check` (one test per kind of problem, each
//! asserting the exit code and the file:line in the message), start-up refusing what `check`
//! refuses, `hash-password`, `--help`, and a served gateway reloaded by SIGHUP and the admin
//! endpoint (with request ids and the HTTP duration histogram on the way).
//!
//! Needs the shared images (`KYCGATE_EVAL_DIR`) for the reload test's selfie.

#[path = "../support/mod.rs"]
#[allow(dead_code)] // the CLI tests use part of the harness
mod support;

mod check;
mod reload;

use std::path::Path;
use std::process::{Command, Output};

/// The real binary, run in `dir` with the given arguments; stdin closed.
pub fn kycgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kycgate"))
        .args(args)
        .current_dir(dir)
        .env_remove("KYCGATE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kycgate")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_flag_has_help_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    for cmd in [&["--help"][..], &["serve", "--help"], &["check", "--help"], &["hash-password", "--help"], &["completions", "--help"], &["healthcheck", "--help"]] {
        let out = kycgate(dir.path(), cmd);
        assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
        let text = stdout(&out);
        // clap prints a flag without a doc comment as a bare line: every `--flag` line must say something.
        for line in text.lines().filter(|l| l.trim_start().starts_with("--") || l.trim_start().starts_with("-h")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(words.len() >= 3, "{cmd:?}: flag without help text: {line:?}\n{text}");
        }
    }
    let serve = stdout(&kycgate(dir.path(), &["serve", "--help"]));
    assert!(serve.contains("KYCGATE_API_KEYS"), "{serve}");
}

#[test]
fn hash_password_reads_stdin_when_it_is_not_a_terminal() {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kycgate"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(b"correct horse\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));
    let hash = stdout(&out).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // The hash verifies the password that was piped, without its newline.
    use argon2::{PasswordHash, PasswordVerifier};
    let parsed = PasswordHash::new(&hash).expect("PHC string");
    assert!(argon2::Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
    assert!(argon2::Argon2::default().verify_password(b"correct horse\n", &parsed).is_err());
}

#[test]
fn completions_are_printed_for_a_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = kycgate(dir.path(), &["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    assert!(script.contains("kycgate") && script.contains("hash-password") && script.contains("--config"), "{script}");
    let bad = kycgate(dir.path(), &["completions", "cmd.exe"]);
    assert!(!bad.status.success());
}

#[test]
fn hash_password_prompts_on_a_terminal_without_echo() {
    use std::io::Write as _;
    // `script` (util-linux) runs the command on a pseudo-terminal and forwards our stdin to it.
    let command = format!("{} hash-password", env!("CARGO_BIN_EXE_kycgate"));
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs the command on a pty");
    let mut stdin = child.stdin.take().expect("stdin");
    // One line per prompt, once each prompt has been read (the terminal discards early input
    // when echo is switched off).
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(700));
        stdin.write_all(b"hunter2-secret\n").expect("type");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let screen = stdout(&out);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("Password: ") && screen.contains("Repeat password: "), "{screen}");
    assert!(!screen.contains("hunter2"), "the password was echoed: {screen}");
    let hash = screen.lines().map(str::trim).find(|l| l.starts_with("$argon2id$")).expect("a hash line");
    use argon2::{PasswordHash, PasswordVerifier};
    assert!(argon2::Argon2::default().verify_password(b"hunter2-secret", &PasswordHash::new(hash).expect("PHC")).is_ok());
}
