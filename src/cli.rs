//! The one-shot subcommands (`check`, `verify`, `models`, `eval`, `providers check|test`,
//! `hash-password`). Each prints to stdout and returns an error for `main` to report.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use bytes::Bytes;

use crate::app::{Gateway, Overrides};
use crate::config::{Config, StoreUrl};
use crate::images;
use crate::tasks::{now_ms, ServiceInput, TaskId, TaskInput, TaskRecord, TaskStatus};

/// A random 32-byte API key, hex encoded.
pub fn random_key() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// `kycgate verify`: one `kyc_passport` task through the same pipeline the server runs,
/// in-process with the memory store; prints the task as `GET /task/` would.
pub async fn verify(mut config: Config, selfie: &Path, passport: &Path, extend_data: bool) -> anyhow::Result<()> {
    config.store.url = StoreUrl::Memory;
    let read = |p: &Path| -> anyhow::Result<Bytes> {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        Ok(Bytes::from(bytes))
    };
    let (selfie, passport) = (read(selfie)?, read(passport)?);
    // Labelled as the API labels its field errors.
    let mut errors = BTreeMap::new();
    for (field, bytes) in [("selfie_image", &selfie), ("passport_image", &passport)] {
        if let Err(problem) = images::check(bytes, &config.images) {
            errors.insert(field, vec![problem.to_string()]);
        }
    }
    if !errors.is_empty() {
        println!("{}", serde_json::to_string_pretty(&errors)?);
        bail!("input images were refused");
    }
    let gateway = Gateway::build(config, &Overrides::default()).await?;
    let input = TaskInput {
        upload: ServiceInput::KycPassport { selfie, passport },
        owner: "cli".into(),
        extend_data,
        trace_context: None,
        base_url: Some("kycgate://local".into()),
    };
    let id = TaskId::new();
    let mut record = TaskRecord::new(id, &input, now_ms());
    gateway.state.store.submit(record.clone(), input.clone()).await?;
    let today = chrono::Utc::now().date_naive();
    let outcome = gateway.pipeline.run(id, input, today).await?;
    record.status = outcome.status();
    record.outcome = Some(outcome);
    println!("{}", serde_json::to_string_pretty(&crate::api::tasks::task_json(&record))?);
    if record.status == TaskStatus::Failure {
        bail!("the task failed");
    }
    Ok(())
}

/// `kycgate providers check`: parse and validate every adapter file (keys, pointers, templates,
/// auth), and say which ones lack credentials in this environment.
pub fn providers_check(config: &Config) -> anyhow::Result<()> {
    use crate::providers::spec::ProviderSpec;
    use crate::providers::SubCallKind;
    let files = crate::providers::spec::load_dir(&config.providers.dir)?;
    for f in &files {
        let note = match &f.spec {
            ProviderSpec::Local(_) => String::new(),
            ProviderSpec::Http(_) => {
                let p = crate::providers::http::HttpProvider::from_file(f)?;
                let serves: Vec<&str> = p.spec().serves().map(SubCallKind::as_str).collect();
                match p.spec().unavailable_reason() {
                    Some(why) => format!("{} (unavailable here: {why})", serves.join(",")),
                    None => serves.join(","),
                }
            }
        };
        println!("ok  {:<16} {}  {note}", f.name, f.path.display());
    }
    println!("{} provider file(s) valid", files.len());
    Ok(())
}

/// `kycgate providers test NAME`: replays the adapter against `<fixtures>/<NAME>/replay.toml`
/// and prints the unified result; fails when it differs from the recording's `expect`.
pub async fn providers_test(config: &Config, name: &str, fixtures: &Path) -> anyhow::Result<()> {
    let replay = crate::simulate::replay::run(name, &config.providers.dir, fixtures).await?;
    println!("{}", serde_json::to_string_pretty(&replay.result)?);
    if let Some(expect) = &replay.recording.expect {
        let expect = serde_json::to_value(expect)?;
        if !crate::simulate::replay::contains(&replay.result, &expect) {
            bail!("the result differs from the recording's `expect`: {expect}");
        }
    }
    Ok(())
}

/// `kycgate hash-password [PASSWORD]`: prints the argon2id hash of the argument, else of a
/// password typed at the terminal (twice, not echoed), else of stdin's first line.
pub fn hash_password(argument: Option<String>) -> anyhow::Result<()> {
    let password = match argument {
        Some(p) => p,
        None if std::io::stdin().is_terminal() => prompt_password()?,
        None => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            input.lines().next().unwrap_or_default().to_string()
        }
    };
    if password.is_empty() {
        bail!("empty password");
    }
    println!("{}", crate::api::auth::hash_password(&password)?);
    Ok(())
}

/// Asks for a password twice on the terminal with echo off (`stty -echo`, restored on return).
fn prompt_password() -> anyhow::Result<String> {
    let tty = std::fs::File::options().read(true).write(true).open("/dev/tty").context("opening the terminal")?;
    let _echo_off = EchoOff::new(&tty)?;
    let mut reader = std::io::BufReader::new(tty.try_clone()?);
    let mut ask = |prompt: &str| -> anyhow::Result<String> {
        let mut out = &tty;
        write!(out, "{prompt}")?;
        out.flush()?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        writeln!(out)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let first = ask("Password: ")?;
    let again = ask("Repeat password: ")?;
    if first != again {
        bail!("the passwords differ");
    }
    Ok(first)
}

/// Terminal echo switched off for as long as it lives.
struct EchoOff(std::fs::File);

impl EchoOff {
    fn new(tty: &std::fs::File) -> anyhow::Result<Self> {
        let status = std::process::Command::new("stty").arg("-echo").stdin(tty.try_clone()?).status();
        match status {
            Ok(s) if s.success() => Ok(Self(tty.try_clone()?)),
            // Never read a password with echo on.
            _ => bail!("cannot switch terminal echo off (stty); pipe the password on stdin instead"),
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Ok(tty) = self.0.try_clone() {
            let _ = std::process::Command::new("stty").arg("echo").stdin(tty).status();
        }
    }
}

/// `kycgate healthcheck`: GET `/healthz` on this host's gateway (or `url`) within 5 s.
pub async fn healthcheck(config: &Config, url: Option<&str>) -> anyhow::Result<()> {
    let url = url.map_or_else(|| format!("http://127.0.0.1:{}/healthz", config.server.listen.port()), str::to_string);
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let status = client.get(&url).send().await.with_context(|| format!("GET {url}"))?.status();
    if !status.is_success() {
        bail!("GET {url}: {status}");
    }
    println!("ok {url}");
    Ok(())
}

/// `kycgate check`: every problem in the configuration as `file:line:column: message` and a
/// hint on stderr (exit 1), or a short summary on stdout (exit 0). Warnings never fail it.
pub fn check(config_file: Option<&Path>) -> ExitCode {
    let report = crate::check::run(config_file);
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if !report.is_ok() {
        for p in &report.problems {
            eprintln!("{p}");
        }
        eprintln!("kycgate check: {} problem(s); the configuration would be refused", report.problems.len());
        return ExitCode::FAILURE;
    }
    println!("kycgate check: configuration OK");
    for line in &report.summary {
        println!("  {line}");
    }
    ExitCode::SUCCESS
}

/// `kycgate models fetch`: obtains every model in the manifest, verifying checksums. Progress goes
/// to stderr per model; a model it cannot get does not stop the others; the closing table on
/// stdout says what is ready, from which source, and why the rest is not.
pub async fn models_fetch(config: &Config, allow_missing: bool) -> anyhow::Result<()> {
    use kycgate_models::{report, Progress};
    let mut store = crate::local::model_store(&config.models)?;
    // An explicit fetch always may use the registries, whatever `models.fetch` says for start-up.
    store.allow_network_fetch = true;
    let outcomes = store
        .fetch_all(|p| match p {
            Progress::Started { index, total, name } => eprintln!("[{}/{total}] {name}: fetching", index + 1),
            Progress::Finished { index, total, outcome } => match &outcome.result {
                Ok(f) => eprintln!("[{}/{total}] {}: ready ({})", index + 1, outcome.name, f.source),
                Err(_) => eprintln!("[{}/{total}] {}: missing", index + 1, outcome.name),
            },
        })
        .await;
    println!();
    print!("{}", report::table(&outcomes));
    let missing = outcomes.iter().filter(|o| o.result.is_err()).count();
    if missing > 0 && !allow_missing {
        bail!("{missing} model(s) could not be obtained; the checks needing them stay disabled");
    }
    Ok(())
}

/// `kycgate models list`: where each model resolves from, without fetching.
pub fn models_list(config: &Config) -> anyhow::Result<()> {
    let store = crate::local::model_store(&config.models)?;
    for spec in store.manifest.models() {
        match store.resolve(&spec.name) {
            Ok(path) => println!("ok       {:<22} {}", spec.name, path.display()),
            Err(_) => println!("missing  {:<22} (run `kycgate models fetch`)", spec.name),
        }
    }
    Ok(())
}

/// `kycgate eval`: runs the local provider over a labelled set, through the API's own sub-calls
/// and model by model, and prints the tables.
pub async fn eval(config: &Config, dir: &Path, floors: Option<&Path>) -> anyhow::Result<()> {
    use crate::eval::{self as harness, Floors, Subject};
    use crate::providers::spec::{self, ProviderSpec};
    // The thresholds in force are the deployed ones: providers/local.toml, else the embedded file.
    let local_file = config.providers.dir.join("local.toml");
    let spec = if local_file.is_file() {
        spec::load_file(&local_file)?.spec
    } else {
        spec::parse_spec(crate::app::LOCAL_PROVIDER_TOML)?
    };
    let ProviderSpec::Local(local) = spec else { bail!("{} is not a local provider file", local_file.display()) };
    let settings = crate::local::LocalSettings::from_spec(&local).context("[settings] of the local provider")?;
    let store = crate::local::model_store(&config.models)?;
    let floors = floors.map(Floors::load).transpose()?;
    let subject = Subject { spec: &local, settings: &settings, store: &store, config };
    let report = harness::run(dir, &subject).await?;
    if let Some(out) = std::env::var_os("KYCGATE_EVAL_PAIRS_TSV") {
        std::fs::write(&out, report.pairs_tsv()).with_context(|| format!("writing {}", Path::new(&out).display()))?;
    }
    if let Some(out) = std::env::var_os("KYCGATE_EVAL_FRAMES_TSV") {
        std::fs::write(&out, report.frames_tsv()).with_context(|| format!("writing {}", Path::new(&out).display()))?;
    }
    println!("{report}");
    println!("{}", report.summary(floors.as_ref()));
    if let Some(floors) = &floors {
        let breaches = report.breaches(floors);
        if !breaches.is_empty() {
            bail!("evaluation below its floors:\n  {}", breaches.join("\n  "));
        }
        println!("All floors hold.");
    }
    Ok(())
}
