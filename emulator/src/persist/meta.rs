//! `meta.json`: token, HMAC secret, guilds, channels and the snowflake high-water mark, written atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::model::{Channel, Guild, Webhook};
use crate::snowflake::Snowflakes;

const FILE: &str = "meta.json";
const VERSION: u32 = 1;

/// Small, rarely changing state. Messages live in the journal so this never grows with uploads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub version: u32,
    pub token: String,
    /// Hex; signs CDN URLs (our scheme, see `cdn::sign`).
    pub hmac_secret: String,
    pub bot_user_id: u64,
    pub default_guild: u64,
    pub default_channel: u64,
    pub guilds: BTreeMap<u64, Guild>,
    pub channels: BTreeMap<u64, Channel>,
    /// Webhooks by id; absent in files written before webhooks existed.
    #[serde(default)]
    pub webhooks: BTreeMap<u64, Webhook>,
    /// Highest id handed out when this file was last written; the journal may know higher ones.
    pub last_snowflake: u64,
}

impl Meta {
    /// Reads `meta.json` from `dir`, or creates a fresh state with one guild and one text channel.
    pub fn load_or_create(dir: &Path, ids: &mut Snowflakes) -> anyhow::Result<Meta> {
        let path = dir.join(FILE);
        if path.exists() {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let meta: Meta = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            anyhow::ensure!(
                meta.version == VERSION,
                "unsupported meta.json version {}",
                meta.version
            );
            ids.observe(meta.last_snowflake);
            return Ok(meta);
        }
        let meta = Meta::fresh(ids);
        meta.save(dir)?;
        Ok(meta)
    }

    fn fresh(ids: &mut Snowflakes) -> Meta {
        let bot_user_id = ids.next();
        let guild = Guild {
            id: ids.next(),
            name: "dstore emulator".into(),
            premium_tier: 0,
            upload_limit: None,
        };
        let channel = Channel {
            id: ids.next(),
            guild_id: guild.id,
            name: "storage".into(),
            position: 0,
            access: Default::default(),
        };
        Meta {
            version: VERSION,
            token: bot_token(),
            hmac_secret: hex::encode(rand::thread_rng().gen::<[u8; 32]>()),
            bot_user_id,
            default_guild: guild.id,
            default_channel: channel.id,
            guilds: BTreeMap::from([(guild.id, guild)]),
            channels: BTreeMap::from([(channel.id, channel)]),
            webhooks: BTreeMap::new(),
            last_snowflake: ids.last(),
        }
    }

    /// tmp + fsync + rename, so a crash leaves either the old or the new file, never half of one.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(&serde_json::to_vec_pretty(self)?)?;
        file.sync_all()?;
        fs::rename(&tmp, dir.join(FILE))?;
        // The rename itself is durable only once the directory is synced.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// A webhook token: 68 characters of the URL-safe alphabet real ones use (discord-api.md §4).
pub fn webhook_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut rng = rand::thread_rng();
    (0..68)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Shaped like a real bot token (three dot-separated parts of URL-safe characters); random.
fn bot_token() -> String {
    let part = |n: usize| -> String {
        rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(n)
            .map(char::from)
            .collect()
    };
    format!("{}.{}.{}", part(26), part(6), part(38))
}
