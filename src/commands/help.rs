//! `help` and `help <command>` at the prompt, and "did you mean" for unknown commands.

use clap::CommandFactory;

use crate::cli::{command_names, ReplLine};

/// The list of commands, or one command's full usage.
pub fn help_text(command: Option<&str>) -> Result<String, String> {
    let mut root = ReplLine::command();
    match command {
        None => {
            let mut out = String::from("Commands:\n");
            let width = root
                .get_subcommands()
                .map(|c| c.get_name().len())
                .max()
                .unwrap_or(0);
            for c in root.get_subcommands() {
                let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
                out.push_str(&format!("  {:<width$}  {about}\n", c.get_name()));
            }
            out.push_str("\nType `help <command>` for its options. Quote paths with spaces.");
            Ok(out)
        }
        Some(name) => match root.find_subcommand_mut(name) {
            Some(c) => Ok(c.render_long_help().to_string()),
            None => Err(unknown(name)),
        },
    }
}

/// One sentence for an unknown command, with the closest known one.
pub fn unknown(name: &str) -> String {
    match suggest(name) {
        Some(s) => {
            format!("unknown command `{name}`; did you mean `{s}`? (`help` lists the commands)")
        }
        None => format!("unknown command `{name}`; `help` lists the commands"),
    }
}

/// The known command closest to `name`, if any is close.
pub fn suggest(name: &str) -> Option<String> {
    command_names()
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, &c), c))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(suggest("uplaod").as_deref(), Some("upload"));
        assert_eq!(suggest("lst").as_deref(), Some("list"));
        assert_eq!(suggest("xyzzy"), None);
    }

    #[test]
    fn help_lists_every_command() {
        let text = help_text(None).unwrap();
        for c in ["upload", "resume", "list", "help", "exit"] {
            assert!(text.contains(c), "{text}");
        }
        assert!(help_text(Some("upload")).unwrap().contains("--json"));
        assert!(help_text(Some("nope")).is_err());
    }
}
