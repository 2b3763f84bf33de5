//! Configuration: the TOML file, environment overrides and launch flags, merged with
//! precedence flags > env > file > defaults; the bot token lives in a redacting [`Secret`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Discord's REST origin; serenity writes every route against it (discord-api.md §5.1).
pub const DISCORD_API_BASE: &str = "https://discord.com";

/// A secret string (bot token) whose `Debug` and `Display` never show the value.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The raw value, for the one place that must send it (the Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Part size: the largest the channel's guild accepts, or a fixed number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartSize {
    Auto,
    Fixed(u64),
}

impl PartSize {
    /// Parses `auto`, a byte count, or a count with a unit (`512KiB`, `8MiB`, `10MB`).
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .with_context(|| format!("part size {text:?} is not `auto` or a size like 8MiB"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            _ => bail!("part size {text:?} has an unknown unit; use B, KiB, MiB, KB or MB"),
        };
        let bytes = n.saturating_mul(mult);
        if bytes == 0 || bytes > MAX_PART_SIZE {
            bail!("part size {text:?} must be between 1 byte and 100 MB (Discord's largest per-file limit)");
        }
        Ok(Self::Fixed(bytes))
    }
}

/// The largest per-file limit Discord has (boost tier 3, discord-api.md §1.1).
pub const MAX_PART_SIZE: u64 = 104_857_600;

impl<'de> Deserialize<'de> for PartSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        PartSize::parse(&number_or_string(d)?).map_err(serde::de::Error::custom)
    }
}

/// A TOML value written as a number or a string, as text.
fn number_or_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::N(n) => n.to_string(),
        Raw::S(s) => s,
    })
}

/// The file as written by a person; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub token: Option<Secret>,
    pub channels: Option<Vec<Snowflake>>,
    pub api_base: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub part_size: Option<PartSize>,
    pub concurrency: Option<usize>,
    pub request_timeout_secs: Option<u64>,
    pub retries: Option<u32>,
}

/// A channel ID written as a number or a string in TOML.
#[derive(Debug, Clone, Copy)]
pub struct Snowflake(pub u64);

impl<'de> Deserialize<'de> for Snowflake {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        parse_channel_id(&number_or_string(d)?)
            .map(Snowflake)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses one channel ID (a Discord snowflake: digits, non-zero).
pub fn parse_channel_id(text: &str) -> Result<u64> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("channel ID {text:?} is not a Discord ID (a number like 1234567890123456789)"),
    }
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct FlagOverrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub api_base: Option<String>,
    pub channels: Vec<u64>,
    pub part_size: Option<PartSize>,
    pub concurrency: Option<usize>,
}

/// The merged configuration dstore runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub token: Secret,
    pub channels: Vec<u64>,
    pub api_base: String,
    pub data_dir: PathBuf,
    pub part_size: PartSize,
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub retries: u32,
    /// Where the configuration was read from, for messages ("set `token` in ...").
    pub source: Option<PathBuf>,
    /// Base delay of the retry backoff; only tests shorten it.
    pub retry_base: Duration,
}

/// Reads environment variables through a function, so tests can supply their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Loads the file (if any), then applies env and flags.
    pub fn load(flags: &FlagOverrides, env: EnvLookup<'_>) -> Result<Self> {
        let path = flags
            .config
            .clone()
            .or_else(|| env("DSTORE_CONFIG").map(PathBuf::from))
            .or_else(default_config_path);
        let explicit = flags.config.is_some() || env("DSTORE_CONFIG").is_some();
        let (file, source) = match path {
            Some(p) if p.exists() => (read_file(&p)?, Some(p)),
            Some(p) if explicit => bail!(
                "the config file {} does not exist; create it from config.example.toml",
                p.display()
            ),
            _ => (FileConfig::default(), None),
        };
        Self::merge(file, source, flags, env)
    }

    fn merge(
        file: FileConfig,
        source: Option<PathBuf>,
        flags: &FlagOverrides,
        env: EnvLookup<'_>,
    ) -> Result<Self> {
        let token = env("DSTORE_TOKEN")
            .map(Secret::new)
            .or(file.token)
            .unwrap_or_default();
        let channels = if !flags.channels.is_empty() {
            flags.channels.clone()
        } else if let Some(list) = env("DSTORE_CHANNELS") {
            list.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(parse_channel_id)
                .collect::<Result<_>>()
                .context("DSTORE_CHANNELS must be comma-separated channel IDs")?
        } else {
            file.channels
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.0)
                .collect()
        };
        let api_base = flags
            .api_base
            .clone()
            .or_else(|| env("DSTORE_API_BASE"))
            .or(file.api_base)
            .unwrap_or_else(|| DISCORD_API_BASE.to_string());
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env("DSTORE_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .or_else(default_data_dir)
            .context("no data directory: set `data_dir` in the config file or DSTORE_DATA_DIR")?;
        let concurrency = flags.concurrency.or(file.concurrency).unwrap_or(4);
        if !(1..=32).contains(&concurrency) {
            bail!("concurrency must be between 1 and 32, not {concurrency}");
        }
        let timeout = file.request_timeout_secs.unwrap_or(120);
        if timeout == 0 {
            bail!("request_timeout_secs must be at least 1");
        }
        Ok(Config {
            token,
            channels,
            api_base: api_base.trim_end_matches('/').to_string(),
            data_dir,
            part_size: flags.part_size.or(file.part_size).unwrap_or(PartSize::Auto),
            concurrency,
            request_timeout: Duration::from_secs(timeout),
            retries: file.retries.unwrap_or(8),
            source,
            retry_base: Duration::from_millis(250),
        })
    }

    /// Checks that Discord can be reached with this configuration; one sentence otherwise.
    pub fn require_remote(&self) -> Result<()> {
        let whereto = match &self.source {
            Some(p) => format!("in {}", p.display()),
            None => format!(
                "in a config file ({}) ",
                default_config_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "--config PATH".into())
            ),
        };
        if self.token.is_empty() {
            bail!(
                "no bot token: set `token` {whereto} or DSTORE_TOKEN; \
                 or run `dstore --emulator` to try dstore without Discord"
            );
        }
        if self.channels.is_empty() {
            bail!(
                "no storage channel: set `channels` {whereto} or DSTORE_CHANNELS; \
                 or run `dstore --emulator` to try dstore without Discord"
            );
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let parsed: FileConfig = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "the config file {} is not valid: {}",
            path.display(),
            e.message()
        )
    })?;
    if parsed.token.is_some() {
        warn_if_shared(path);
    }
    Ok(parsed)
}

/// Warns when a file holding the token can be read by other users.
fn warn_if_shared(path: &Path) {
    // Printed directly: logging starts only once the configuration names the data dir.
    if readable_by_others(path) {
        eprintln!(
            "warning: {} holds the bot token and can be read by other users; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
}

fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

pub fn default_config_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("dstore").join("config.toml"))
}

pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("dstore"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let file: FileConfig = toml::from_str(
            "token = 'file-token'\nchannels = ['111', 222]\napi_base = 'http://file'\nconcurrency = 2",
        )
        .unwrap();
        let env = env_of(&[
            ("DSTORE_CHANNELS", "333,444"),
            ("DSTORE_API_BASE", "http://env/"),
        ]);
        let flags = FlagOverrides {
            concurrency: Some(7),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let c = Config::merge(file, None, &flags, &env).unwrap();
        assert_eq!(c.token.expose(), "file-token");
        assert_eq!(c.channels, vec![333, 444]);
        assert_eq!(c.api_base, "http://env");
        assert_eq!(c.concurrency, 7);
        let flags = FlagOverrides {
            channels: vec![9],
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let file: FileConfig = toml::from_str("channels = [1]").unwrap();
        let c = Config::merge(file, None, &flags, &env).unwrap();
        assert_eq!(c.channels, vec![9]);
        assert_eq!(c.part_size, PartSize::Auto);
    }

    #[test]
    fn secret_never_prints() {
        let file: FileConfig = toml::from_str("token = 'abc.def.ghi'").unwrap();
        let shown = format!("{file:?} {}", file.token.clone().unwrap());
        assert!(!shown.contains("abc.def"), "{shown}");
    }

    #[test]
    fn part_sizes_parse() {
        assert_eq!(PartSize::parse("auto").unwrap(), PartSize::Auto);
        assert_eq!(PartSize::parse("8MiB").unwrap(), PartSize::Fixed(8 << 20));
        assert_eq!(PartSize::parse("1000").unwrap(), PartSize::Fixed(1000));
        assert!(PartSize::parse("0").is_err());
        assert!(PartSize::parse("200MB").is_err());
        assert!(PartSize::parse("8 parsecs").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_channels_are_reported() {
        assert!(toml::from_str::<FileConfig>("tokn = 'x'").is_err());
        assert!(toml::from_str::<FileConfig>("channels = ['general']").is_err());
    }

    #[test]
    fn config_readable_by_others_is_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "token = 'x'").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&p));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!readable_by_others(&p));
    }

    #[test]
    fn missing_token_names_the_emulator() {
        let flags = FlagOverrides {
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let c = Config::merge(FileConfig::default(), None, &flags, &|_| None).unwrap();
        let err = c.require_remote().unwrap_err().to_string();
        assert!(
            err.contains("DSTORE_TOKEN") && err.contains("--emulator"),
            "{err}"
        );
    }
}
