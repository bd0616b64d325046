//! Entry point: install the TLS crypto provider, then hand over to the CLI.

fn main() -> std::process::ExitCode {
    // kube's rustls client needs one process-wide provider; install it before anything else.
    let _ = rustls::crypto::ring::default_provider().install_default();
    application_quality_api::cli::main()
}
