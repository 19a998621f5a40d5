//! A lab script as a run, a plan, a graph or the REPL starts it: read from its file
//! (the `#!` line blanked), named, and given an engine on a backend with the `--var`
//! constants set and the sources its error reports may point into.

use super::{var_value, RhaiResult, ScriptEngine, Shared};
use crate::error::{Code, Error, Result};
use crate::sources::{self, Sources};
use std::path::{Path, PathBuf};

pub struct ScriptFile {
    /// The script's name in reports and in the lab's state: its path as given, or
    /// `<repl>` for a REPL started without one.
    pub shown: String,
    /// The lab's name: `--name`, else the file's stem (until the script says
    /// `lab("NAME")`).
    pub lab: String,
    text: Option<String>,
    /// Where `import "./x"` looks: the file's directory.
    base_dir: Option<PathBuf>,
}

impl ScriptFile {
    /// Read the script at `path` (None: a REPL without one); `name` is `--name`.
    pub fn read(path: Option<&Path>, name: Option<&str>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(ScriptFile { shown: "<repl>".into(), lab: name.unwrap_or("repl").to_string(), text: None, base_dir: None });
        };
        let text = sources::read_file(path).map_err(|e| {
            Error::io(Code::MissingScript, format!("cannot read {}", path.display()), &e).help("check the path of the lab script")
        })?;
        let lab = match name {
            Some(n) => n.to_string(),
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "lab".into()),
        };
        let base_dir = path.parent().map(|d| if d.as_os_str().is_empty() { PathBuf::from(".") } else { d.to_path_buf() });
        tracing::debug!(script = %path.display(), lab, bytes = text.len(), "script read");
        Ok(ScriptFile { shown: path.display().to_string(), lab, text: Some(text), base_dir })
    }

    /// An engine on `backend` with the `--var` constants, and the sources reports read
    /// (the script's text among them).
    pub fn engine(&self, backend: Shared, vars: &[(String, String)]) -> (ScriptEngine, Sources) {
        let start = std::time::Instant::now();
        let mut engine = ScriptEngine::new(backend, self.base_dir.as_deref());
        for (k, v) in vars {
            engine.set_var(k, var_value(v));
        }
        let mut sources = Sources::default();
        if let Some(text) = &self.text {
            sources.add(&self.shown, text);
        }
        tracing::debug!(us = start.elapsed().as_micros() as u64, vars = vars.len(), "engine built");
        (engine, sources)
    }

    /// Compile and run the script in `engine` (nothing to do for a REPL without one).
    pub fn run(&self, engine: &mut ScriptEngine) -> RhaiResult<()> {
        let Some(text) = &self.text else { return Ok(()) };
        let start = std::time::Instant::now();
        let out = engine.compile(&self.shown, text).and_then(|ast| engine.run(ast));
        tracing::debug!(script = self.shown, ms = start.elapsed().as_millis() as u64, ok = out.is_ok(), "script ran");
        out.map(|_| ())
    }
}
