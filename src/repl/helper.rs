//! Tab completion at the prompt: command names, local paths after `upload`, file IDs after
//! `resume`.

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::{Context, Helper, Highlighter, Hinter, Validator};

use crate::catalog::Catalog;
use crate::cli::command_names;

#[derive(Helper, Hinter, Highlighter, Validator)]
pub struct DstoreHelper {
    files: FilenameCompleter,
    catalog: Catalog,
}

impl DstoreHelper {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            files: FilenameCompleter::new(),
            catalog,
        }
    }
}

impl Completer for DstoreHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let Some((command, _)) = before.split_once(char::is_whitespace) else {
            return Ok((0, matching(before, command_names())));
        };
        let word_start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[word_start..];
        match command {
            "upload" => self.files.complete(line, pos, ctx),
            "resume" | "download" | "verify" | "info" | "delete" | "undelete" => {
                Ok((word_start, matching(word, self.catalog.ids())))
            }
            "help" => Ok((word_start, matching(word, command_names()))),
            _ => Ok((pos, Vec::new())),
        }
    }
}

fn matching(prefix: &str, options: Vec<String>) -> Vec<Pair> {
    let mut out: Vec<Pair> = options
        .into_iter()
        .filter(|o| o.starts_with(prefix))
        .map(|o| Pair {
            replacement: format!("{o} "),
            display: o,
        })
        .collect();
    out.sort_by(|a, b| a.display.cmp(&b.display));
    out
}
