//! The `relay365` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `--features mimalloc`: see Cargo.toml.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use relay365::{telemetry, App, Config, StartError};

#[derive(Parser)]
#[command(
    name = "relay365",
    version,
    about = "Microsoft 365 mailboxes as reliable, instant, signed events for n8n"
)]
struct Cli {
    /// A TOML file layered over the built-in defaults (see config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default). Migrations are applied at start.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Run the whole pipeline on this machine (service, Graph simulator, a sink for n8n) with
    /// no account and no network, show each event's way, and exit.
    Demo(relay365::demo::DemoArgs),
    /// Run the Graph simulator alone (token endpoints, Graph API, control API).
    Sim(relay365::sim::SimArgs),
    /// Print the status tree of a running instance.
    Status {
        /// Base URL of the instance (default: http://{RELAY365_LISTEN}).
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Sim(args)) = cli.command {
        // The simulator needs no service configuration.
        telemetry::init_logs("info", relay365::config::LogFormat::Text);
        return match tokio::runtime::Runtime::new()
            .map(|rt| rt.block_on(relay365::sim::run_cli(args)))
        {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(Command::Demo(args)) = cli.command {
        // The demo builds its own configuration; logs stay quiet unless RUST_LOG asks.
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        telemetry::init_logs(&filter, relay365::config::LogFormat::Text);
        return match tokio::runtime::Runtime::new().map(|rt| rt.block_on(relay365::demo::run(args)))
        {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                ExitCode::from(1)
            }
        };
    }
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return failed(&StartError::config(&e)),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(cfg).await,
            Command::Migrate => migrate(cfg).await,
            Command::Status { url } => status(cfg, url).await,
            Command::Sim(_) | Command::Demo(_) => ExitCode::from(2), // handled above
        }
    })
}

/// A start-up failure: its one line, and its exit code.
fn failed(e: &StartError) -> ExitCode {
    eprintln!("{e}");
    e.exit_code()
}

fn init_logs(cfg: &Config) {
    telemetry::init_logs(&cfg.log, cfg.log_format);
}

async fn serve(cfg: Config) -> ExitCode {
    if let Err(e) = cfg.check_api_key_rule() {
        return failed(&StartError::config(&e));
    }
    init_logs(&cfg);
    if cfg.api_key.is_none() {
        tracing::warn!(
            "RELAY365_API_KEY is not set: the management API is open to anyone on this machine"
        );
    }
    let addr = cfg.listen;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => return failed(&StartError::bind(addr, &e)),
    };
    tracing::info!(config = ?cfg, "starting relay365 {}", env!("CARGO_PKG_VERSION"));
    let app = match App::start(cfg, listener).await {
        Ok(app) => app,
        Err(e) => return failed(&StartError::other(&e)),
    };
    tracing::info!(url = %app.url(), "relay365 is ready");
    match app.run_until(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "stopping: the supervision tree gave up"
            );
            ExitCode::from(1)
        }
    }
}

async fn migrate(cfg: Config) -> ExitCode {
    init_logs(&cfg);
    match relay365::open_store(&cfg).await {
        Ok(store) => {
            store.close().await;
            println!(
                "migrations applied to {}",
                relay365::config::redact_url(&cfg.database_url)
            );
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

async fn status(cfg: Config, url: Option<String>) -> ExitCode {
    let base = url.unwrap_or_else(|| format!("http://{}", cfg.listen));
    match relay365::status::fetch_and_render(&base, cfg.api_key.as_deref()).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
