//! The chaos run's supervisor: one process per service, restarted whenever it exits (as
//! Kubernetes would), with the faults injected and the deaths counted for the report.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use suti_e2e::{SERVICES, signal, start, stop, tails};
use suti_testkit::free_port;

/// The failpoint each stage's first process is started with: between them they cover a death
/// part-way through the writes, between the writes and the publish, and between the publish and
/// the ack.
fn first_failpoint(service: &str) -> Option<&'static str> {
    match service {
        "crawler-clusterer" => Some("artifacts_partly_written:1"),
        "expert-finetuner" => Some("artifacts_written:2"),
        "generator" => Some("artifacts_partly_written:2"),
        "clip-filter" => Some("published:2"),
        _ => None,
    }
}

/// One worker process per service, restarted whenever it exits; counts what it did.
pub struct Supervisor {
    env: Vec<(String, String)>,
    logs: PathBuf,
    /// Where serving listens.
    pub serving_port: u16,
    /// The workers by service.
    pub workers: BTreeMap<&'static str, Worker>,
    /// Faults injected, in order, with the seconds since the start.
    pub faults: Vec<String>,
    /// SIGKILLs the test sent.
    pub kills_sent: usize,
    /// Deaths by SIGKILL (the test's and the failpoints').
    pub killed: usize,
    /// Exits with an error status (a service that cannot reach a backend at start-up exits 1).
    pub exited_with_error: usize,
    started: Instant,
}

/// One service's process, as the supervisor keeps it.
pub struct Worker {
    child: Option<Child>,
    /// Its admin port (the same in every incarnation).
    pub admin: SocketAddr,
    incarnation: usize,
    /// How many times it has died.
    pub deaths: usize,
}

impl Supervisor {
    /// Starts every service with `env`, logging to files in `logs`.
    pub fn start_all(env: Vec<(String, String)>, logs: &Path) -> Self {
        let mut supervisor = Self {
            env,
            logs: logs.to_path_buf(),
            serving_port: free_port().unwrap(),
            workers: BTreeMap::new(),
            faults: Vec::new(),
            kills_sent: 0,
            killed: 0,
            exited_with_error: 0,
            started: Instant::now(),
        };
        for name in SERVICES {
            supervisor.workers.insert(
                name,
                Worker {
                    child: None,
                    admin: SocketAddr::from(([127, 0, 0, 1], free_port().unwrap())),
                    incarnation: 0,
                    deaths: 0,
                },
            );
            supervisor.spawn(name);
        }
        supervisor
    }

    fn spawn(&mut self, name: &'static str) {
        let worker = self.workers.get_mut(name).expect("a known service");
        worker.incarnation += 1;
        let mut env = self.env.clone();
        env.push(("SUTI__ADMIN__LISTEN".into(), worker.admin.to_string()));
        env.push((
            "SUTI__SERVING__LISTEN".into(),
            format!("127.0.0.1:{}", self.serving_port),
        ));
        if worker.incarnation == 1
            && let Some(point) = first_failpoint(name)
        {
            env.push(("SUTI_FAILPOINT".into(), point.into()));
        }
        let log = self.logs.join(format!("{name}.{}.log", worker.incarnation));
        worker.child = Some(start(&[name], &env, &log));
    }

    /// Notes a fault (or a recovery) for the report, with the time since the start.
    pub fn note(&mut self, fault: String) {
        let at = self.started.elapsed().as_secs_f64();
        println!("chaos: {at:6.1}s  {fault}");
        self.faults.push(format!("{at:.1} s: {fault}"));
    }

    /// Restarts every worker that has exited, noting how it ended.
    fn revive(&mut self) {
        let mut dead = Vec::new();
        for (name, worker) in &mut self.workers {
            if let Some(child) = &mut worker.child
                && let Ok(Some(status)) = child.try_wait()
            {
                worker.deaths += 1;
                worker.child = None;
                dead.push((*name, status));
            }
        }
        for (name, status) in dead {
            use std::os::unix::process::ExitStatusExt;
            if status.signal() == Some(9) {
                self.killed += 1;
            } else {
                self.exited_with_error += 1;
            }
            self.note(format!("{name} exited ({status}); restarted"));
            self.spawn(name);
        }
    }

    /// SIGKILLs `name`'s process (the supervisor restarts it).
    pub fn kill(&mut self, name: &'static str, why: &str) {
        if let Some(child) = &self.workers[name].child {
            signal(child, "KILL");
            self.kills_sent += 1;
            self.note(format!("SIGKILL {name} ({why})"));
        }
    }

    /// Stops every worker (SIGTERM, then SIGKILL).
    pub fn stop_all(&mut self) {
        for worker in self.workers.values_mut() {
            if let Some(child) = worker.child.take() {
                stop(child);
            }
        }
    }
}

/// Runs the supervisor's revive loop until the returned task is aborted.
pub fn keep_alive(supervisor: Arc<Mutex<Supervisor>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            supervisor.lock().unwrap().revive();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Stops every worker and fails the test with their logs' tails.
pub fn fail(what: &str, supervisor: &Arc<Mutex<Supervisor>>, logs: &Path) -> ! {
    supervisor.lock().unwrap().stop_all();
    panic!("{what}\n{}", tails(logs));
}
