//! What several benches share: the project's Python venv (`tests/setup-python.sh`).

use std::path::PathBuf;
use std::process::Command;

/// The venv's python, with DuckDB, after `tests/setup-python.sh` made sure of it. Panics with
/// the script's stderr when it fails.
#[allow(dead_code)] // each bench is its own crate; `nexmark` calls only `try_venv_python`
pub fn venv_python() -> PathBuf {
    try_venv_python().unwrap_or_else(|e| panic!("tests/setup-python.sh: {e}"))
}

/// The same, or why not (the script could not start, or failed).
pub fn try_venv_python() -> Result<PathBuf, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/setup-python.sh");
    let setup = Command::new("bash").arg(script).output().map_err(|e| e.to_string())?;
    if !setup.status.success() {
        return Err(String::from_utf8_lossy(&setup.stderr).into_owned());
    }
    let stdout = String::from_utf8(setup.stdout).map_err(|e| e.to_string())?;
    Ok(PathBuf::from(stdout.trim()))
}
