//! `suti config check <service>`: load, validate and print a service's effective configuration.

use std::path::Path;
use std::process::ExitCode;

use suti_runtime::{ServiceName, SutiConfig};

/// Loads and validates; prints the redacted configuration the service would run with.
pub fn check(service: ServiceName, file: Option<&Path>, quiet: bool) -> ExitCode {
    match SutiConfig::load_file(file) {
        Ok(config) => {
            if !quiet {
                println!("# effective configuration of {service} (secrets redacted)");
                match config.stages.for_service(service) {
                    Some(_) => println!(
                        "# consumes queue {:?}",
                        topology_queue(&config, service).unwrap_or_default()
                    ),
                    None => println!("# consumes the release fan-out"),
                }
                print!("{}", config.to_redacted_yaml());
            }
            eprintln!("configuration of {service} is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn topology_queue(config: &SutiConfig, service: ServiceName) -> Option<String> {
    let topology =
        suti_queue::Topology::pipeline(&config.queue.namespace, config.queue.delivery_limit);
    service.input_queue().map(|q| topology.queue_name(q))
}
