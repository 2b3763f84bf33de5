//! Tab completion at the prompt: command names, local paths after `upload` and `sync`, file IDs
//! after `resume`, synced folders after `restore` and `forget`, synced paths after `versions`,
//! `download` and `info`.

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::{Context, Helper, Highlighter, Hinter, Validator};

use crate::catalog::Catalog;
use crate::cli::command_names;
use crate::sync::Folders;

#[derive(Helper, Hinter, Highlighter, Validator)]
pub struct DstoreHelper {
    files: FilenameCompleter,
    catalog: Catalog,
    folders: Folders,
}

impl DstoreHelper {
    pub fn new(catalog: Catalog, folders: Folders) -> Self {
        Self {
            files: FilenameCompleter::new(),
            catalog,
            folders,
        }
    }

    /// The synced folders' names, and (with `paths`) `<name>/<path>` of every file and folder of
    /// their latest snapshots.
    fn synced(&self, paths: bool) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.folders.all().unwrap_or_default() {
            if paths {
                if let Ok(Some(l)) = self.folders.latest(&f.id) {
                    out.extend(
                        l.snapshot
                            .files
                            .iter()
                            .map(|n| format!("{}/{}", f.name, n.path)),
                    );
                }
            }
            out.push(f.name);
        }
        out
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
            "upload" | "sync" => self.files.complete(line, pos, ctx),
            "download" | "info" => {
                let mut options = self.catalog.ids();
                options.extend(self.synced(true));
                Ok((word_start, matching(word, options)))
            }
            "resume" | "verify" | "delete" | "undelete" => {
                Ok((word_start, matching(word, self.catalog.ids())))
            }
            "restore" | "versions" => Ok((word_start, matching(word, self.synced(true)))),
            "forget" => Ok((word_start, matching(word, self.synced(false)))),
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
