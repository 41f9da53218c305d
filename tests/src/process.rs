//! Child processes in their own process groups, killed as a group on drop and on
//! SIGINT/SIGTERM of the test process.

// Signalling a process group needs `libc::kill`; each call is on a pgid we spawned.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Every live group, so the signal watcher can kill them all.
static LIVE: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
static WATCHER: Once = Once::new();

/// How long a group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created; it has
    // no memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

fn install_watcher() {
    WATCHER.call_once(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            eprintln!("harness: could not install the SIGINT/SIGTERM watcher");
            return;
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let groups: Vec<i32> = LIVE
                    .lock()
                    .map(|live| live.iter().flatten().copied().collect())
                    .unwrap_or_default();
                eprintln!(
                    "harness: signal {signal}: stopping {} child group(s)",
                    groups.len()
                );
                for pgid in &groups {
                    signal_group(*pgid, libc::SIGTERM);
                }
                std::thread::sleep(Duration::from_millis(500));
                for pgid in &groups {
                    signal_group(*pgid, libc::SIGKILL);
                }
                std::process::exit(128 + signal);
            }
        });
    });
}

/// A spawned child leading its own process group, its output in a log file.
pub struct Group {
    name: &'static str,
    child: Child,
    log_path: PathBuf,
}

impl Group {
    /// Spawns `command` as the leader of a new process group, stdout and stderr to
    /// `<dir>/<name>.log`.
    pub fn spawn(name: &'static str, mut command: Command, dir: &Path) -> Self {
        install_watcher();
        let log_path = dir.join(format!("{name}-{}.log", std::process::id()));
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("creating {name} log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cloning {name} log: {e}"));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name} ({command:?}): {e}"));
        let pgid = child.id() as i32;
        if let Ok(mut live) = LIVE.lock() {
            live.get_or_insert_with(HashSet::new).insert(pgid);
        }
        Self {
            name,
            child,
            log_path,
        }
    }

    fn pgid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `Some(status)` once the leader has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything the child has written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last 60 lines of the child's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!("[{}]\n{}", self.name, lines[from..].join("\n"))
    }

    /// SIGINT to the leader alone, as a terminal's Ctrl-C reaches a script that has put
    /// its own children in groups of their own.
    pub fn interrupt(&self) {
        // SAFETY: kill(2) on the pid we spawned; no memory-safety preconditions.
        unsafe {
            libc::kill(self.pgid(), libc::SIGINT);
        }
    }

    /// SIGKILL to the group at once (a crash: no shutdown, no flush); reaps the leader.
    pub fn kill(&mut self) {
        let pgid = self.pgid();
        signal_group(pgid, libc::SIGKILL);
        let _ = self.child.wait();
        if let Ok(mut live) = LIVE.lock()
            && let Some(live) = live.as_mut()
        {
            live.remove(&pgid);
        }
    }

    /// SIGTERM to the group, SIGKILL after the grace period; reaps the leader.
    pub fn stop(&mut self) {
        let pgid = self.pgid();
        if self.exited().is_none() {
            signal_group(pgid, libc::SIGTERM);
            let deadline = Instant::now() + GRACE;
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        // Whatever is left in the group (workerd under wrangler) goes now.
        signal_group(pgid, libc::SIGKILL);
        let _ = self.child.wait();
        if let Ok(mut live) = LIVE.lock()
            && let Some(live) = live.as_mut()
        {
            live.remove(&pgid);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}
