//! The `biproxy` command: serve, check a config, or hash a password.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use biproxy::auth::scram::{Verifier, DEFAULT_ITERATIONS};
use biproxy::config::{self, Config, ConfigErrors, SourceKind};
use biproxy::server::Server;

/// A PostgreSQL-wire BI query gateway.
///
/// With no arguments, serves the built-in demo workspace `demo` on 127.0.0.1:15432,
/// generating its data under ./data/demo on first start.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve clients (the default command).
    Serve(ServeArgs),
    /// Validate a config file: print every error with file, line and field; exit 1 if any.
    Check {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read a password from standard input and print its SCRAM-SHA-256 verifier for `[[user]] password`.
    HashPassword {
        /// PBKDF2 iterations.
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Config file; without it, the built-in demo config is served.
    #[arg(long, short, env = "BIPROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, overriding `server.listen`.
    #[arg(long, short)]
    listen: Option<SocketAddr>,
    /// Order rows of generated demo data (1 to 100000000), overriding `demo.orders`.
    #[arg(long)]
    demo_orders: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config }) => check(&config),
        Some(Command::HashPassword { iterations }) => hash_password(iterations),
        Some(Command::Serve(args)) => serve(&args),
        None => serve(&cli.serve),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("biproxy=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    match path {
        Some(p) => config::load(p),
        None => config::demo(),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    init_logging();
    let mut config = match load(args.config.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "biproxy: the config has {} error(s); not starting",
                errors.0.len()
            );
            return ExitCode::FAILURE;
        }
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(orders) = args.demo_orders {
        for source in &mut config.sources {
            let SourceKind::Lake {
                demo: Some(spec), ..
            } = &mut source.kind
            else {
                continue;
            };
            spec.orders = orders;
        }
    }
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(cause = %e, "cannot start");
                eprintln!("biproxy: {e}");
                return ExitCode::FAILURE;
            }
        };
        let stop = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            stop.cancel();
        });
        server.run().await;
        ExitCode::SUCCESS
    })
}

fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    builder
        .enable_all()
        .build()
        .map_err(|e| eprintln!("biproxy: cannot start the runtime: {e}"))
        .ok()
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[allow(clippy::print_stdout)]
fn check(path: &Path) -> ExitCode {
    init_logging();
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(biproxy::semantic::build(&config, false)) {
        Ok(_) => {
            println!(
                "{}: ok ({} workspace(s), {} dataset(s), {} user(s))",
                path.display(),
                config.workspaces.len(),
                config.datasets.len(),
                config.users.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn hash_password(iterations: u32) -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if let Err(e) = stdin.lock().read_line(&mut line) {
        eprintln!("biproxy: cannot read the password: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("biproxy: empty password refused");
        return ExitCode::FAILURE;
    }
    println!("{}", Verifier::generate(password, iterations));
    ExitCode::SUCCESS
}
