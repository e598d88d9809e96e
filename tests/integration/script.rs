//! Running a project script (the notebooks, the fuzzers) as a child process group with a
//! deadline, its output in files.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Runs `command` in a process group of its own for at most `deadline`; past it, the group is
/// ended. Returns the exit status (`None` past the deadline) and the output, stdout then
/// stderr.
pub fn run_bounded(mut command: Command, deadline: Duration) -> (Option<ExitStatus>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .process_group(0) // so that a timeout can end the script and what it started
        .spawn()
        .expect("the script starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > deadline {
            stop(&mut child);
            break None;
        }
        sleep(Duration::from_millis(200));
    };
    let log = format!(
        "{}{}",
        fs::read_to_string(&stdout).unwrap_or_default(),
        fs::read_to_string(&stderr).unwrap_or_default()
    );
    (status, log)
}

/// Ends `child` and its process group: SIGTERM, then SIGKILL to what is left after 10 s. (A
/// notebook kernel has a process group of its own; it ends when its runner does.)
fn stop(child: &mut Child) {
    let group = format!("-{}", child.id());
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, "--", &group])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    signal("-TERM");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let _ = child.try_wait(); // reap the runner, or it stays in the group as a zombie
        if !signal("-0") {
            return;
        }
        sleep(Duration::from_millis(200));
    }
    signal("-KILL");
    let _ = child.wait();
}
