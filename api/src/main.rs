use anyhow::Context;
use api::{Application, Cli, Command, Mode};
use clap::Parser;

/// mimalloc, not glibc's malloc: under load the runtime's threads and the database's
/// waited on glibc's arena locks; with a heap per thread, `me` under 200 clients went
/// from 4,700 to 9,800 requests/s (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::PrintSchema => {
            print!("{}", schema::sdl());
            Ok(())
        }
        Command::Migrate => {
            let telemetry = api::telemetry::init(&config);
            api::database::connect_writer(&config).await?;
            tracing::info!("migrations applied");
            telemetry.shutdown().await;
            Ok(())
        }
        Command::Worker => {
            let telemetry = api::telemetry::init(&config);
            // The database, the queue and a bus for runs only: no token issuer, no documents.
            let services = api::startup::WorkerServices::connect(&config).await?;
            let workers = api::startup::Workers::start(
                &services,
                std::sync::Arc::new(schema::runs::RunMetrics),
                &config,
            );
            let _endpoint =
                api::observe::serve_worker_endpoint(services.clone(), config.workers.metrics_bind)
                    .await?;
            println!("CodeCrafter worker running (Ctrl-C or SIGTERM to stop)");
            shutdown_signal().await;
            workers.stop(config.workers.grace()).await;
            // The runs' last events go out before the link stops.
            services.bus.shutdown().await;
            services.db.close().await?;
            // The runs' last spans too.
            telemetry.shutdown().await;
            Ok(())
        }
        Command::Serve => {
            let telemetry = api::telemetry::init(&config);
            let app = Application::build(&config).await?;
            let addr = app.local_addr()?;
            match app.mode() {
                Mode::Embedded => println!(
                    "CodeCrafter (embedded mode, data in {}) listening on http://{addr}/graphql",
                    config.database.data_dir.display()
                ),
                Mode::Production => {
                    println!("CodeCrafter (PostgreSQL) listening on http://{addr}/graphql")
                }
            }
            let served = app
                .run_until(shutdown_signal())
                .await
                .context("server failed");
            telemetry.shutdown().await;
            served
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "could not listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
