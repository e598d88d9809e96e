//! Typed errors of the library. `main` maps them to exit codes: [`SpecError`] and usage errors
//! exit with 2, everything at run time with 1.

use std::fmt;
use std::path::PathBuf;

/// A spec that cannot be planned, located at a file, line and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    /// 1-based line and column; 0 when the location is unknown.
    pub line: usize,
    pub column: usize,
    /// Dotted key at fault, e.g. `aggregates[2].window.size`.
    pub key: String,
    pub message: String,
    /// What would be valid, when there is a short list.
    pub help: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// Errors of planning a spec file against its sources: the spec itself, or a file it names
/// that cannot be read (a missing source file, a pinned schema).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A file the spec names that cannot be read (a missing source file, a pinned schema); the
    /// error names the file. The source layer's errors convert into it.
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync>),
}

/// Errors while running a dataflow.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{path}: {message}")]
    Source { path: PathBuf, message: String },
    /// A source that cannot be opened or read (the error names the file).
    #[error(transparent)]
    Read(#[from] crate::source::SourceError),
    /// A plan this command cannot run.
    #[error("{0}")]
    Config(String),
    /// What stopped a worker: a source it read or an output it wrote (the message names it).
    #[error("{0}")]
    Worker(String),
    #[error("writing output `{output}` to {path}: {message}")]
    Sink {
        output: String,
        path: PathBuf,
        message: String,
    },
    #[error("timely: {0}")]
    Timely(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A scenario truth file (`sluice eval --truth`) that does not parse (serde names the line
    /// and column).
    #[error("{path}: not a scenario truth file: {message}")]
    Truth { path: PathBuf, message: String },
}
