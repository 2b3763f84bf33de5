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
    #[serde(default, deserialize_with = "concurrency_in_range")]
    pub concurrency: Option<usize>,
    #[serde(default, deserialize_with = "timeout_at_least_one")]
    pub request_timeout_secs: Option<u64>,
    pub retries: Option<u32>,
    pub format: Option<StorageFormat>,
    pub encryption: Option<bool>,
    /// Webhook URLs (secrets, like the token).
    pub webhooks: Option<Vec<Secret>>,
    /// A file of webhook URLs, one per line; `#` comments and blank lines ignored.
    pub webhooks_file: Option<PathBuf>,
}

/// Which storage format new uploads are written in (docs/format.md); every format is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFormat {
    /// Plain parts and readable catalogue entries, as dstore before format 2 wrote them.
    V1,
    /// Encrypted, compressed, deduplicated chunks in packs, with a sealed catalogue.
    V2,
}

impl<'de> Deserialize<'de> for StorageFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        StorageFormat::parse(&number_or_string(d)?).map_err(serde::de::Error::custom)
    }
}

impl StorageFormat {
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "1" => Ok(Self::V1),
            "2" => Ok(Self::V2),
            _ => bail!("the storage format must be 1 or 2, not {text:?}"),
        }
    }
}

/// A webhook to post through: its ID (public: printed, logged, recorded) and its token (a
/// secret, like the bot token: only ever sent in the request path).
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: u64,
    pub token: Secret,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Webhook({}, <token redacted>)", self.id)
    }
}

/// Parses a webhook URL in any of Discord's shapes (`https://discord.com/api/webhooks/<id>/<token>`,
/// with or without `/v<n>`, on discord.com, discordapp.com, canary. or ptb.), or one aimed at an
/// emulator; keeps only the ID and the token, since requests go to `api_base`. The error never
/// repeats the URL: it holds the token.
pub fn parse_webhook_url(url: &str) -> Result<Webhook> {
    let bad = || {
        anyhow::anyhow!(
            "is not a Discord webhook URL (https://discord.com/api/webhooks/<id>/<token>; the \
             channel's Integrations > Webhooks > Copy Webhook URL)"
        )
    };
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let path = rest.split_once('/').map(|(_, p)| p).ok_or_else(bad)?;
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    if segs.next() != Some("api") {
        return Err(bad());
    }
    let mut seg = segs.next().ok_or_else(bad)?;
    if seg.starts_with('v') && seg[1..].bytes().all(|b| b.is_ascii_digit()) && seg.len() > 1 {
        seg = segs.next().ok_or_else(bad)?;
    }
    if seg != "webhooks" {
        return Err(bad());
    }
    let id = segs
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(bad)?;
    let token = segs.next().ok_or_else(bad)?;
    if segs.next().is_some()
        || token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad());
    }
    Ok(Webhook {
        id,
        token: Secret::new(token),
    })
}

/// The lines of a webhooks file that hold URLs: not blank, not a `#` comment.
fn webhook_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// The most parts in flight at once.
pub const MAX_CONCURRENCY: usize = 32;

/// Transfers in flight when `concurrency` is not set (downloads take at least this many).
pub const DEFAULT_CONCURRENCY: usize = 4;

fn concurrency_in_range<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<usize>, D::Error> {
    let n = usize::deserialize(d)?;
    parse_concurrency(&n.to_string())
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn timeout_at_least_one<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u64>, D::Error> {
    match u64::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "request_timeout_secs must be at least 1",
        )),
        n => Ok(Some(n)),
    }
}

/// Parses a number of parts in flight, 1 to 32.
pub fn parse_concurrency(text: &str) -> Result<usize> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => bail!("concurrency must be a number from 1 to {MAX_CONCURRENCY}, not {text:?}"),
    }
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
    /// Whether `concurrency` was given (flag or file) rather than defaulted: an upload over
    /// lanes then keeps at most that many packs in flight instead of what the lanes allow.
    pub concurrency_set: bool,
    pub request_timeout: Duration,
    pub retries: u32,
    /// Where the configuration was read from, for messages ("set `token` in ...").
    pub source: Option<PathBuf>,
    /// Base delay of the retry backoff; only tests shorten it.
    pub retry_base: Duration,
    /// The storage format new uploads are written in.
    pub format: StorageFormat,
    /// Whether `init` makes an encrypted repository (the default).
    pub encryption: bool,
    /// Webhooks to post through besides (or instead of) the bot; see docs/lanes.md.
    pub webhooks: Vec<Webhook>,
    /// A file holding the repository passphrase, tried after DSTORE_PASSPHRASE,
    /// DSTORE_PASSPHRASE_FILE and DSTORE_PASSPHRASE_COMMAND; only the `--emulator` demo sets it.
    pub passphrase_file: Option<PathBuf>,
}

/// Reads environment variables through a function, so tests can supply their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Config {
    /// Sets `concurrency` as the user would (it then also caps uploads over lanes).
    pub fn set_concurrency(&mut self, n: usize) {
        self.concurrency = n;
        self.concurrency_set = true;
    }

    /// Loads the file (if any), then applies env and flags.
    pub fn load(flags: &FlagOverrides, env: EnvLookup<'_>) -> Result<Self> {
        let found = config_path(flags.config.as_deref(), env);
        let (file, source) = match found {
            Some(p) if p.path.exists() => (read_file(&p.path)?, Some(p.path)),
            Some(p) if p.from != PathFrom::Default => bail!(
                "the config file {} (from {}) does not exist; `dstore config init` writes one there",
                p.path.display(),
                p.from.as_str()
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
        let webhooks = webhooks(&file, source.as_deref(), env)?;
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
        let in_file = |key: &str| match &source {
            Some(p) => format!("`{key}` in {}", p.display()),
            None => format!("`{key}`"),
        };
        let (api_base, api_from) = if let Some(a) = flags.api_base.clone() {
            (a, "--api-base".to_string())
        } else if let Some(a) = env("DSTORE_API_BASE") {
            (a, "DSTORE_API_BASE".to_string())
        } else if let Some(a) = file.api_base {
            (a, in_file("api_base"))
        } else {
            (DISCORD_API_BASE.to_string(), "the default".to_string())
        };
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            bail!("the API base {api_base:?} (from {api_from}) is not an http:// or https:// URL");
        }
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env("DSTORE_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .or_else(default_data_dir)
            .context("no data directory: set `data_dir` in the config file or DSTORE_DATA_DIR")?;
        let (concurrency, from) = match (flags.concurrency, file.concurrency) {
            (Some(n), _) => (n, "--concurrency".to_string()),
            (None, Some(n)) => (n, in_file("concurrency")),
            (None, None) => (DEFAULT_CONCURRENCY, "the default".to_string()),
        };
        let concurrency_set = flags.concurrency.is_some() || file.concurrency.is_some();
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            bail!("concurrency must be between 1 and {MAX_CONCURRENCY}, not {concurrency} (from {from})");
        }
        let timeout = file.request_timeout_secs.unwrap_or(120);
        if timeout == 0 {
            bail!(
                "request_timeout_secs must be at least 1 (from {})",
                in_file("request_timeout_secs")
            );
        }
        let format = match env("DSTORE_FORMAT") {
            Some(f) => StorageFormat::parse(&f).context("DSTORE_FORMAT")?,
            None => file.format.unwrap_or(StorageFormat::V2),
        };
        Ok(Config {
            webhooks,
            format,
            encryption: file.encryption.unwrap_or(true),
            passphrase_file: None,
            token,
            channels,
            api_base: api_base.trim_end_matches('/').to_string(),
            data_dir,
            part_size: flags.part_size.or(file.part_size).unwrap_or(PartSize::Auto),
            concurrency,
            concurrency_set,
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
        // Webhooks alone can upload, download, verify and delete (docs/lanes.md 5).
        if self.token.is_empty() && self.webhooks.is_empty() {
            bail!(
                "no bot token: set `token` {whereto} or DSTORE_TOKEN (or `webhooks`); \
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

/// `DSTORE_WEBHOOKS` (comma-separated) if set, else `webhooks` and `webhooks_file` together;
/// the same webhook twice counts once.
fn webhooks(file: &FileConfig, source: Option<&Path>, env: EnvLookup<'_>) -> Result<Vec<Webhook>> {
    let in_file = |key: &str| match source {
        Some(p) => format!("`{key}` in {}", p.display()),
        None => format!("`{key}`"),
    };
    let mut out: Vec<Webhook> = Vec::new();
    let mut push = |w: Webhook| {
        if !out.iter().any(|o| o.id == w.id) {
            out.push(w);
        }
    };
    if let Some(list) = env("DSTORE_WEBHOOKS") {
        for (n, url) in list.split(',').filter(|u| !u.trim().is_empty()).enumerate() {
            push(
                parse_webhook_url(url)
                    .with_context(|| format!("webhook {} in DSTORE_WEBHOOKS", n + 1))?,
            );
        }
        return Ok(out);
    }
    for (n, url) in file.webhooks.iter().flatten().enumerate() {
        push(
            parse_webhook_url(url.expose())
                .with_context(|| format!("webhook {} of {}", n + 1, in_file("webhooks")))?,
        );
    }
    if let Some(path) = &file.webhooks_file {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the webhooks file {} (from {})",
                path.display(),
                in_file("webhooks_file")
            )
        })?;
        for (line, url) in webhook_lines(&text) {
            push(
                parse_webhook_url(url).with_context(|| {
                    format!("line {line} of the webhooks file {}", path.display())
                })?,
            );
        }
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let parsed: FileConfig = toml::from_str(&text).map_err(|e| {
        let at = e.span().map_or_else(String::new, |span| {
            let (line, column) = line_and_column(&text, span.start);
            format!(" at line {line}, column {column}")
        });
        anyhow::anyhow!(
            "the config file {} is not valid{at}: {}",
            path.display(),
            e.message().trim_end()
        )
    })?;
    if parsed.token.is_some() {
        warn_if_shared(path);
    }
    Ok(parsed)
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    // TOML spans fall on character boundaries; a stray one counts from the end.
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
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

/// Where the config file path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathFrom {
    Flag,
    Env,
    Default,
}

impl PathFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flag => "--config",
            Self::Env => "DSTORE_CONFIG",
            Self::Default => "the default location",
        }
    }
}

/// The config file dstore reads (whether or not it exists) and why that one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPath {
    pub path: PathBuf,
    pub from: PathFrom,
}

/// `--config`, else `DSTORE_CONFIG`, else the platform's config folder.
pub fn config_path(flag: Option<&Path>, env: EnvLookup<'_>) -> Option<ConfigPath> {
    if let Some(p) = flag {
        return Some(ConfigPath {
            path: p.to_path_buf(),
            from: PathFrom::Flag,
        });
    }
    if let Some(p) = env("DSTORE_CONFIG").filter(|p| !p.is_empty()) {
        return Some(ConfigPath {
            path: PathBuf::from(p),
            from: PathFrom::Env,
        });
    }
    default_config_path().map(|path| ConfigPath {
        path,
        from: PathFrom::Default,
    })
}

/// The commented example config, as `dstore config init` writes it.
pub const EXAMPLE: &str = include_str!("../config.example.toml");

/// Writes the commented example config to `path`, readable by the user only; never replaces
/// a file that exists.
pub fn init_file(path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "the config file {} already exists; edit it, or move it away to write a new one",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    // The example's token and channel are placeholders: written commented out, so the file
    // works as it is (offline commands, `--emulator`) until they are filled in.
    let text: String = EXAMPLE
        .lines()
        .map(|l| {
            if l.starts_with("token = ") || l.starts_with("channels = ") {
                format!("# {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
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

    fn file_error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, text).unwrap();
        let flags = FlagOverrides {
            config: Some(p),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        format!("{:#}", Config::load(&flags, &|_| None).unwrap_err())
    }

    #[test]
    fn file_errors_name_the_line_and_column() {
        let e = file_error("concurrency = 4\npart_size = \"8 parsecs\"\n");
        assert!(e.contains("at line 2, column 13"), "{e}");
        assert!(e.contains("unknown unit"), "{e}");
        let e = file_error("retries = 3\n  concurrency = 50\n");
        assert!(
            e.contains("at line 2, column 17") && e.contains("1 to 32"),
            "{e}"
        );
        let e = file_error("tokn = 'x'");
        assert!(
            e.contains("at line 1, column 1") && e.contains("tokn"),
            "{e}"
        );
        let e = file_error("request_timeout_secs = 0");
        assert!(e.contains("line 1") && e.contains("at least 1"), "{e}");
    }

    #[test]
    fn a_bad_value_names_its_source() {
        let flags = FlagOverrides {
            concurrency: Some(50),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let e = Config::merge(FileConfig::default(), None, &flags, &|_| None).unwrap_err();
        assert!(e.to_string().contains("(from --concurrency)"), "{e}");
        let flags = FlagOverrides {
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let env = env_of(&[("DSTORE_API_BASE", "discord.com")]);
        let e = Config::merge(FileConfig::default(), None, &flags, &env).unwrap_err();
        assert!(e.to_string().contains("(from DSTORE_API_BASE)"), "{e}");
        let file: FileConfig = toml::from_str("api_base = 'ftp://x'").unwrap();
        let e = Config::merge(file, Some("/etc/d.toml".into()), &flags, &|_| None).unwrap_err();
        assert!(
            e.to_string().contains("(from `api_base` in /etc/d.toml)"),
            "{e}"
        );
        let env = env_of(&[("DSTORE_CHANNELS", "12,general")]);
        let e = Config::merge(FileConfig::default(), None, &flags, &env).unwrap_err();
        assert!(format!("{e:#}").contains("DSTORE_CHANNELS"), "{e:#}");
    }

    #[test]
    fn init_writes_a_private_commented_config_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new").join("config.toml");
        init_file(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("# token = ") && text.contains("concurrency = 4"));
        // It parses, and its placeholders are not taken for a token and a channel.
        let parsed: FileConfig = toml::from_str(&text).unwrap();
        assert!(parsed.token.is_none() && parsed.channels.is_none());
        std::fs::write(&p, "concurrency = 2").unwrap();
        let e = init_file(&p).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "concurrency = 2");
    }

    #[test]
    fn the_config_path_comes_from_flag_env_or_default() {
        let env = env_of(&[("DSTORE_CONFIG", "/env/c.toml")]);
        let p = config_path(Some(Path::new("/flag/c.toml")), &env).unwrap();
        assert_eq!(
            (p.path.to_str().unwrap(), p.from),
            ("/flag/c.toml", PathFrom::Flag)
        );
        let p = config_path(None, &env).unwrap();
        assert_eq!(
            (p.path.to_str().unwrap(), p.from),
            ("/env/c.toml", PathFrom::Env)
        );
        if let Some(p) = config_path(None, &|_| None) {
            assert_eq!(p.from, PathFrom::Default);
        }
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

    const TOKEN: &str = "Aa0_-bcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab";

    #[test]
    fn webhook_urls_in_every_discord_shape_keep_only_id_and_token() {
        for url in [
            format!("https://discord.com/api/webhooks/123456789012345678/{TOKEN}"),
            format!("https://discord.com/api/v10/webhooks/123456789012345678/{TOKEN}?wait=true"),
            format!("https://canary.discordapp.com/api/webhooks/123456789012345678/{TOKEN}/"),
            format!("http://127.0.0.1:4000/api/v10/webhooks/123456789012345678/{TOKEN}"),
        ] {
            let w = parse_webhook_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((w.id, w.token.expose()), (123456789012345678, TOKEN));
            assert!(!format!("{w:?}").contains(TOKEN));
        }
        for bad in [
            "discord.com/api/webhooks/1/abc".to_string(),
            format!("https://discord.com/api/channels/1/{TOKEN}"),
            format!("https://discord.com/api/webhooks/x/{TOKEN}"),
            "https://discord.com/api/webhooks/1/".to_string(),
            format!("https://discord.com/api/webhooks/1/{TOKEN}/messages/5"),
            "https://discord.com/api/webhooks/1/tok%20en".to_string(),
        ] {
            let e = parse_webhook_url(&bad).unwrap_err().to_string();
            assert!(e.contains("is not a Discord webhook URL"), "{e}");
            assert!(
                !e.contains(TOKEN) && !e.contains("tok%20en"),
                "the error never repeats the URL: {e}"
            );
        }
    }

    #[test]
    fn webhooks_come_from_the_env_or_the_file_and_its_list_file_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("hooks.txt");
        std::fs::write(
            &list,
            format!("# lanes\n\nhttps://discord.com/api/webhooks/2/{TOKEN}\n  https://discord.com/api/webhooks/1/{TOKEN}\n"),
        )
        .unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(
            &p,
            format!(
                "webhooks = ['https://discord.com/api/webhooks/1/{TOKEN}']\nwebhooks_file = '{}'\n",
                list.display()
            ),
        )
        .unwrap();
        let flags = FlagOverrides {
            config: Some(p.clone()),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let c = Config::load(&flags, &|_| None).unwrap();
        assert_eq!(
            c.webhooks.iter().map(|w| w.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let env = |k: &str| {
            (k == "DSTORE_WEBHOOKS").then(|| format!("https://discord.com/api/webhooks/9/{TOKEN}"))
        };
        let c = Config::load(&flags, &env).unwrap();
        assert_eq!(c.webhooks.iter().map(|w| w.id).collect::<Vec<_>>(), vec![9]);
        std::fs::write(
            &list,
            format!("https://discord.com/api/webhooks/1/{TOKEN}\nnot a url {TOKEN}\n"),
        )
        .unwrap();
        let e = format!("{:#}", Config::load(&flags, &|_| None).unwrap_err());
        assert!(
            e.contains("line 2 of the webhooks file") && !e.contains(TOKEN),
            "{e}"
        );
    }
}
