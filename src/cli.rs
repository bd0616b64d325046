//! Command line: `serve` (default), `migrate`, `user add`, `seed`, `import-fixtures`,
//! `events export|replay`. Every failure prints one `error: ...` line and exits non-zero.

use crate::{
    catalogue,
    config::{Config, ConfigError},
    db, replay, telemetry,
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use std::{io::Read, path::PathBuf, process::ExitCode, time::Duration};

/// Application Quality API: runs code-quality pipelines from events and a REST API.
#[derive(Debug, Parser)]
#[command(name = "application-quality-api", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands (scripts rely on these names).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP on $BIND_ADDRESS:$PORT (127.0.0.1:8080 unless configured; the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage local users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Load the built-in demo catalogue (idempotent).
    Seed,
    /// Load Django `loaddata` JSON fixture files of the reference backend.
    ImportFixtures {
        /// Fixture files, loaded in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Export or replay stored CloudEvents.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

/// Which events `events export|replay` take.
#[derive(Debug, Args)]
pub struct EventFilterArgs {
    /// Only events received since this time: RFC 3339 (`2026-11-25T08:00:00Z`), a date, or a
    /// duration back from now (`24h`, `30m`, `7d`).
    #[arg(long, value_parser = replay::since_arg)]
    since: Option<DateTime<Utc>>,
    /// Only events whose type starts with this prefix.
    #[arg(long = "type", value_name = "PREFIX")]
    type_prefix: Option<String>,
}

impl EventFilterArgs {
    fn filter(self) -> replay::Filter {
        replay::Filter {
            since: self.since,
            type_prefix: self.type_prefix,
        }
    }
}

/// `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Write stored events as CloudEvents JSON lines (structured mode), in received order.
    Export {
        #[command(flatten)]
        filter: EventFilterArgs,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Send stored events again (binary mode) with their original source and id, so a
    /// receiver that deduplicates (this service) answers `duplicate` and starts nothing.
    Replay {
        #[command(flatten)]
        filter: EventFilterArgs,
        /// Read the events from an export file instead of the database (`--since` then
        /// compares the events' `time`).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Where to send: this service's URL or a broker's.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Give every event a fresh id: the receiver treats them as new (new runs).
        #[arg(long)]
        new_id: bool,
        /// Bearer token for the target.
        #[arg(long, env = "APPLICATION_QUALITY_REPLAY_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Seconds to wait for each answer.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        timeout: u64,
    },
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password comes from stdin (`--password-stdin`) or from
    /// `APPLICATION_QUALITY_PASSWORD`, never from the command line.
    Add {
        username: String,
        /// Give the user staff rights.
        #[arg(long)]
        staff: bool,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Parses arguments, runs the command, and maps errors to one line and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.server.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        // A configuration refused once the listener exists (see `Config::check_listener`).
        Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let addr = format!("{}:{}", config.server.bind_address, config.server.port);
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            config.check_listener(listener.local_addr()?)?;
            crate::run(config, listener).await
        }
        Command::Migrate => {
            let conn = open(&config).await?;
            db::migrate(&conn).await.context("migrating")?;
            println!("migrations applied");
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    username,
                    staff,
                    password_stdin,
                },
        } => {
            let password = read_password(password_stdin)?;
            let conn = open_migrated(&config).await?;
            let user = catalogue::users::add_user(&conn, &username, &password, staff).await?;
            println!(
                "created user {:?} (id {}, staff: {})",
                user.username, user.id, user.is_staff
            );
            Ok(())
        }
        Command::Seed => {
            let conn = open_migrated(&config).await?;
            let summary = catalogue::seed::seed(&conn).await?;
            println!("{summary}");
            Ok(())
        }
        Command::ImportFixtures { files } => {
            let conn = open_migrated(&config).await?;
            for file in files {
                let summary = catalogue::fixtures::import_file(&conn, &file).await?;
                println!("{}: {summary}", file.display());
            }
            Ok(())
        }
        Command::Events { command } => events(command, &config).await,
    }
}

async fn events(command: EventsCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        EventsCommand::Export { filter, output } => {
            let conn = open_migrated(config).await?;
            let filter = filter.filter();
            let n = match &output {
                Some(path) => {
                    // Stored events carry payloads and headers: readable by the owner only.
                    let file = crate::files::create_private(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    replay::export(&conn, &filter, &mut std::io::BufWriter::new(file)).await?
                }
                None => {
                    let stdout = std::io::stdout();
                    replay::export(&conn, &filter, &mut stdout.lock()).await?
                }
            };
            // Standard output may be the export itself: the count goes to stderr.
            eprintln!("exported {n} event(s)");
            Ok(())
        }
        EventsCommand::Replay {
            filter,
            input,
            to,
            new_id,
            token,
            timeout,
        } => {
            let opts = replay::ReplayOptions {
                to,
                new_id,
                token,
                timeout: Duration::from_secs(timeout.max(1)),
            };
            let filter = filter.filter();
            let summary = match input {
                Some(path) => {
                    let file = std::fs::File::open(&path)
                        .with_context(|| format!("cannot open {}", path.display()))?;
                    let events = replay::read_export(std::io::BufReader::new(file))
                        .with_context(|| format!("reading {}", path.display()))?;
                    replay::replay_events(events, &filter, &opts).await?
                }
                None => {
                    let conn = open_migrated(config).await?;
                    replay::replay_stored(&conn, &filter, &opts).await?
                }
            };
            print!("{summary}");
            for failure in &summary.failures {
                eprintln!("failed: {failure}");
            }
            if summary.failed > 0 {
                anyhow::bail!(
                    "{} of {} event(s) were not accepted",
                    summary.failed,
                    summary.sent
                );
            }
            Ok(())
        }
    }
}

async fn open(config: &Config) -> anyhow::Result<sea_orm::DatabaseConnection> {
    db::connect(config).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open DATABASE_URL ({}): {e}",
            crate::redact_url(&config.database.database_url)
        )
    })
}

async fn open_migrated(config: &Config) -> anyhow::Result<sea_orm::DatabaseConnection> {
    let conn = open(config).await?;
    if config.database.auto_migrate() {
        db::migrate(&conn).await.context("migrating")?;
    } else if db::pending_migrations(&conn).await? > 0 {
        anyhow::bail!(
            "the database has pending migrations: run `application-quality-api migrate` first"
        );
    }
    Ok(conn)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut buf = String::new();
        std::io::stdin()
            .take(4096)
            .read_to_string(&mut buf)
            .context("reading the password from stdin")?;
        buf.lines().next().unwrap_or("").to_string()
    } else {
        std::env::var("APPLICATION_QUALITY_PASSWORD").map_err(|_| {
            anyhow::anyhow!(
                "no password given: use --password-stdin or set APPLICATION_QUALITY_PASSWORD"
            )
        })?
    };
    if password.chars().count() < 8 {
        anyhow::bail!("the password must have at least 8 characters");
    }
    Ok(password)
}
