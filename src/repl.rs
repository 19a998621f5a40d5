//! A plain REPL on the same engine: variables and functions persist across entries,
//! errors are rendered without ending the session.

use crate::diag;
use crate::error::{Error, Result};
use crate::script::ScriptEngine;
use rhai::{EvalAltResult, ParseErrorType};
use rustyline::error::ReadlineError;

/// The parser ran out of input: the entry goes on on the next line.
fn is_unfinished(err: &EvalAltResult, entry: &str) -> bool {
    match err {
        EvalAltResult::ErrorParsing(ParseErrorType::UnexpectedEOF, _) => true,
        EvalAltResult::ErrorParsing(ParseErrorType::MissingToken(..), pos) => pos.line().is_some_and(|l| l > entry.trim_end().lines().count()),
        _ => false,
    }
}

pub fn run(engine: &mut ScriptEngine, sources: &mut diag::Sources) -> Result<()> {
    let mut rl = rustyline::DefaultEditor::new().map_err(|e| Error::new("cannot start the REPL").why(e.to_string()))?;
    eprintln!("nsscript REPL: Rhai statements; Ctrl-D leaves.");
    let mut entry = String::new();
    let mut n = 0;
    loop {
        let prompt = if entry.is_empty() { "nsscript> " } else { "     ...> " };
        match rl.readline(prompt) {
            Ok(line) => {
                entry.push_str(&line);
                entry.push('\n');
                n += 1;
                let name = format!("<repl:{n}>");
                match engine.compile(&name, &entry) {
                    Err(e) if is_unfinished(&e, &entry) => continue,
                    Err(e) => {
                        sources.add(&name, &entry);
                        eprint!("{}", diag::render(&diag::from_rhai(&e, &name, sources)));
                    }
                    Ok(ast) => {
                        sources.add(&name, &entry);
                        let _ = rl.add_history_entry(entry.trim_end());
                        match engine.run(ast) {
                            Ok(v) if !v.is_unit() => println!("{v}"),
                            Ok(_) => {}
                            Err(e) => eprint!("{}", diag::render(&diag::from_rhai(&e, &name, sources))),
                        }
                    }
                }
                entry.clear();
            }
            Err(ReadlineError::Interrupted) => entry.clear(),
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(Error::new("cannot read input").why(e.to_string())),
        }
    }
}
